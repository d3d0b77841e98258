"""The selected model's card: `<run>/model/README.md`, Hugging Face metadata front matter plus prose.

    write_model_card(Path("runs/demo-cpu"))     # -> runs/demo-cpu/model/README.md

The directory is then ready for ``huggingface-cli upload <repo> runs/demo-cpu/model``. The card says
what the model was made from (base model, teacher, training data and its content hash, the config), how
it scores (the report's Table 1), and the exact prompts it was trained and evaluated with.

Note: README.md is a file of the model directory, so an evaluation run that fingerprints that directory
(`cotspec.evaluate.model_files`) sees it as added; write the card after the model's evaluations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import CotspecError
from ..tasks.prompts import COT_TRIGGER, MATH_STOP, zero_shot_answer_only_prompt, zero_shot_cot_prompt
from .collect import BASE, TEACHER, RunData, read_run, task_label
from .document import Document, Section, to_markdown
from .tables import MODE_LABEL, table1, table1_block, table1_notes

CARD = "README.md"
_TAGS = ["cotspec", "chain-of-thought", "distillation", "math-word-problems", "gsm8k", "reasoning"]


def write_model_card(run_dir: Path) -> Path:
    """Write `<run_dir>/model/README.md` for the run's selected model; returns its path."""
    run = read_run(Path(run_dir))
    model_dir = run.path / "model"
    if not (model_dir / "config.json").is_file():
        raise CotspecError(
            f"{model_dir}: no selected model here (no config.json); finish the run's select stage before writing its card"
        )
    path = model_dir / CARD
    text = model_card_text(run)
    tmp = path.with_name(CARD + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def hub_reference(model: str | None) -> tuple[str | None, str | None]:
    """(hub id, license) of a student reference when known: a preset's source model, or a hub id."""
    if not model:
        return None, None
    from ..models.presets import PRESETS

    if model in PRESETS:
        preset = PRESETS[model]
        source = preset.description.split(",")[0].strip()
        return (source if "/" in source else None), preset.license.lower()
    if "/" in model and not Path(model).expanduser().exists() and not model.startswith((".", "/", "~")):
        return model, None
    return None, None


def front_matter(run: RunData) -> dict[str, Any]:
    base_id, license_id = hub_reference(run.student)
    meta: dict[str, Any] = {}
    if license_id:
        meta["license"] = license_id
    if base_id:
        meta["base_model"] = base_id
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "text2text-generation" if _is_seq2seq(run) else "text-generation"
    meta["tags"] = list(_TAGS)
    meta["datasets"] = ["openai/gsm8k"]
    meta["language"] = ["en"]
    results = _model_index_results(run, meta["pipeline_tag"])
    if results:
        meta["model-index"] = [{"name": run.name, "results": results}]
    return meta


def _is_seq2seq(run: RunData) -> bool:
    model_dir = run.path / "model"
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("is_encoder_decoder"))


_DATASET_IDS = {"gsm8k": "openai/gsm8k", "svamp": "ChilleD/SVAMP", "multiarith": "ChilleD/MultiArith",
                "asdiv": "EleutherAI/asdiv", "bbh": "lukaemon/bbh"}


def _model_index_results(run: RunData, pipeline_tag: str) -> list[dict[str, Any]]:
    table = table1(run)
    if table is None:
        return []
    row = next((r for r in table.rows if r.model not in (BASE, TEACHER) and run.selection
                and int(r.model.removeprefix("step-")) in run.selection.selected), None)
    if row is None:
        return []
    results = []
    for column, score in row.cells.items():
        results.append({
            "task": {"type": pipeline_tag, "name": f"{MODE_LABEL.get(column.mode, column.mode)} chain-of-thought"},
            "dataset": {"type": _DATASET_IDS.get(column.task, column.task), "name": task_label(column.task)},
            "metrics": [{"type": "accuracy", "value": round(100 * score.accuracy, 1),
                         "name": f"accuracy (n={score.n}, s.e. {100 * score.stderr:.1f})"}],
        })
    return results


def model_card_text(run: RunData) -> str:
    meta = yaml.safe_dump(front_matter(run), sort_keys=False, allow_unicode=True, width=1000)
    doc = Document(f"{run.name}: a student specialized for multi-step math reasoning")
    intro = Section("Model")
    student, teacher = run.student or "(not recorded)", run.teacher or "(not recorded)"
    selected = ", ".join(map(str, run.selected_steps)) or "(not recorded)"
    intro.add(_p(
        f"This model is `{student}` fine-tuned with cotspec to reason step by step on "
        f"math word problems, by distilling chains of thought from the teacher `{teacher}` (Fu et al., "
        "\"Specializing Smaller Language Models towards Multi-Step Reasoning\", ICML 2023). It is the "
        f"checkpoint of training step {selected}"
        + (f", chosen by the `{run.selection.criterion}` criterion on the dev sets." if run.selection and run.selection.criterion else ".")
    ))
    intro.add(_p(
        "Specialization trades generic ability for math: expect gains on GSM8K-style problems and losses on "
        "unrelated tasks (see BIG-Bench Hard below, where evaluated)."
    ))
    doc.sections.append(intro)

    doc.sections.append(_prompt_section(_is_seq2seq(run)))

    data = Section("Training data")
    build = run.build or {}
    lines = []
    if build:
        lines.append(f"content sha256 of the rows: `{build.get('content_sha256')}` (`data/build.json` of the run)")
        lines.append(f"{build.get('rows')} rows from {build.get('questions')} GSM8K training questions and "
                     f"{build.get('chains')} chains; {build.get('dev_questions_excluded')} gsm8k-dev questions left out")
        for name, row in (build.get("formats") or {}).items():
            lines.append(f"format `{name}`: {row.get('rows')} rows ({row.get('rows_with_logprobs')} with teacher log-probs)")
        sources = build.get("sources") or {}
        if "store" in sources:
            lines.append(f"teacher chains: {sources['store'].get('chains')}")
        if "gold" in sources:
            lines.append(f"GSM8K's own solutions: {sources['gold'].get('chains')} chains")
    else:
        lines.append("the run's data/build.json was not found: the training data is not recorded here")
    if run.coverage is not None and run.coverage.soft_coverage is not None:
        lines.append(f"teacher top-{run.coverage.top_k} distribution targets on {100 * run.coverage.soft_coverage:.1f}% "
                     "of the target tokens of rows with log-probs (the rest: cross-entropy)")
    data.add(_bullets(lines))
    doc.sections.append(data)

    results = Section("Evaluation")
    table = table1(run)
    if table is None:
        results.add(_p("No test-set evaluation is recorded in the run directory."))
    else:
        results.add(table1_block(table))
        results.add(_bullets(table1_notes(run, table)))
    doc.sections.append(results)

    if run.config_text:
        doc.sections.append(Section("Config").add(_p("The run's resolved config (`config.yaml`):")).add(_code(run.config_text, "yaml")))
    if run.versions:
        doc.sections.append(Section("Software").add(_bullets([f"{k}: {v}" for k, v in run.versions.items()])))
    body = to_markdown(doc, run.path / "model")
    return f"---\n{meta}---\n\n{body}"


def _prompt_section(seq2seq: bool) -> Section:
    section = Section("Prompt format")
    question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    section.add(_p(
        "Zero-shot chain of thought (the format the model was trained on and evaluated with): the question "
        f"after `Q: `, a newline, the trigger `{COT_TRIGGER}` and a newline. The model writes one reasoning "
        "step per line and ends with a line `The answer is <number>`; stop generating at a blank line "
        f"(stop strings: {', '.join(repr(s) for s in MATH_STOP)})."
    ))
    section.add(_code(zero_shot_cot_prompt(question), "text"))
    section.add(_p("Answer only (no reasoning): the model answers ` The answer is <number>` after:"))
    section.add(_code(zero_shot_answer_only_prompt(question), "text"))
    section.add(_p(
        "In-context (few-shot): worked examples in the same layout, separated by a blank line, before the "
        "question (the evaluation's few-shot prompts are Wei et al.'s exemplars in `Question:` form). The "
        "prompt is plain text: no chat template is applied."
    ))
    loader = "AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM"
    section.add(_code(
        f"from transformers import {loader}, AutoTokenizer\n\n"
        "tokenizer = AutoTokenizer.from_pretrained(PATH)\n"
        f"model = {loader}.from_pretrained(PATH)\n"
        "prompt = \"Q: \" + question + \"\\nLet's think step by step\\n\"\n"
        "ids = tokenizer(prompt, return_tensors=\"pt\")\n"
        "out = model.generate(**ids, max_new_tokens=256, do_sample=False)\n"
        + ("print(tokenizer.decode(out[0], skip_special_tokens=True))\n" if seq2seq
           else "print(tokenizer.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True))\n"),
        "python",
    ))
    return section


def _p(text: str):
    from .document import Paragraph

    return Paragraph(text)


def _bullets(items: list[str]):
    from .document import Bullets

    return Bullets(items)


def _code(text: str, language: str):
    from .document import Code

    return Code(text, language)
