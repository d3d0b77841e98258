"""Run directories for the report tests.

`build_run`: a small run directory built for real where cheap: `cotspec.evaluate` of two tiny models
(limit 2) for the base and step-4 summaries, a real `cotspec.build` of 4 gold questions, a sample store
of synthetic rows; the rest (selection, state, versions, trainer state) written as `cotspec run` would.
`synthetic_run`: summary files with paper-like numbers (math up, BBH down, a teacher row), for the
tables and plots that real tiny models (which score 0) cannot exercise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TEST_TASKS_ZERO = "gsm8k,multiarith,asdiv,svamp,bbh:boolean_expressions"
TEST_TASKS_FEW = "gsm8k,svamp"
STEP = 4


def _tiny_model(path: Path, seed: int) -> Path:
    from transformers import ByT5Tokenizer

    from support.tiny_models import save_model_dir, tiny_llama

    tokenizer = ByT5Tokenizer()
    model = tiny_llama(tokenizer, seed=seed, hidden_size=32, intermediate_size=64, initializer_range=0.02)
    return save_model_dir(model, tokenizer, path)


def _evaluate(model: Path, out: Path, tasks: str, mode: str, data_dir: Path, split: str | None = None) -> None:
    import cotspec

    fields = dict(model=str(model), tasks=tasks, out=str(out), limit=2, mode=mode, data_dir=str(data_dir),
                  max_new_tokens=6, batch_size=8)
    if split:
        fields["split"] = split
    cotspec.evaluate(**fields)


def build_run(root: Path, data_dir: Path) -> Path:
    """The run directory: base = one tiny model, step-2 and step-4 = another (the 'trained' one)."""
    import torch

    from cotspec.store import SampleStore
    from support.sample_rows import examples, make_row, run_config

    run = root / "run"
    run.mkdir(parents=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = _tiny_model(root / "base-model", seed=0)
        trained = _tiny_model(run / "model", seed=1)
        for model, name in ((base, "base"), (trained, f"step-{STEP}")):
            _evaluate(model, run / "eval" / name / "test-zero-shot", TEST_TASKS_ZERO, "zero-shot", data_dir)
            _evaluate(model, run / "eval" / name / "test-few-shot", TEST_TASKS_FEW, "few-shot", data_dir)
            _evaluate(model, run / "eval" / name / "dev-zero-shot", "gsm8k-dev", "zero-shot", data_dir)
        # A second checkpoint's dev numbers: the trained model's, copied (its predictions are the same).
        shutil.copytree(run / "eval" / f"step-{STEP}" / "dev-zero-shot", run / "eval" / "step-2" / "dev-zero-shot")
    finally:
        torch.set_num_threads(previous)

    import cotspec

    cotspec.build(gold=True, limit=4, out=str(run / "data"), data_dir=str(data_dir))

    (run / "teacher").mkdir()
    with SampleStore.open(run / "teacher" / "samples.db", writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(3))
        rows = []
        for q in range(3):
            for i in range(4):
                rows.append(make_row(f"gsm8k/train/{q}", i, run_id=run_id, correct=(i < q)))
        store.add_many(rows)

    checkpoint = run / "train" / f"checkpoint-{STEP}"
    checkpoint.mkdir(parents=True)
    history = [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4, "epoch": s / 4} for s in range(1, STEP + 1)]
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": STEP, "log_history": history}))
    (run / "train" / "train_summary.json").write_text(json.dumps({
        "steps": STEP, "first_loss": 2.0, "last_loss": 0.5,
        "data": {"content_sha256": "x", "top_k": 5, "rows": 16, "target_tokens": 1000,
                 "target_tokens_with_teacher_rows": 400, "soft_target_tokens": 300, "soft_coverage": 0.75},
    }))
    (run / "selection.json").write_text(json.dumps({
        "criterion": "mean",
        "picked": {"in_distribution": STEP, "ood": 2, "mean": STEP},
        "selected": [STEP],
        "dev": {"step-2": {"gsm8k-dev": 0.0}, f"step-{STEP}": {"gsm8k-dev": 0.0}},
        "excluded_from_test": {"svamp": ["svamp/test/1", "svamp/test/2"]},
    }))
    (run / "versions.json").write_text(json.dumps({"cotspec": "0.1.0", "torch": torch.__version__,
                                                    "transformers": "4.56.0", "python": "3.11.0"}))
    (run / "state.json").write_text(json.dumps({"stages": {
        "eval-base": {"status": "done", "inputs_sha256": "a" * 64, "seconds": 3.5, "finished_at": "2025-01-01T00:00:00",
                      "summary": "base evaluated"},
        "train": {"status": "done", "inputs_sha256": "b" * 64, "seconds": 42.0, "finished_at": "2025-01-01T00:01:00",
                  "summary": {"steps": STEP}},
    }}))
    (run / "config.yaml").write_text(
        f"student:\n  model: {base}\nteacher:\n  model: teacher-7b\ntrain:\n  max_steps: {STEP}\n", encoding="utf-8"
    )
    return run


def write_summary(run: Path, model: str, suite: str, mode: str, tasks: dict[str, tuple[int, int]]) -> Path:
    """A summary.json as `cotspec eval` writes it, with the given (correct, n) per task (bbh:* grouped)."""
    rows: dict[str, dict] = {}
    for name, (correct, n) in tasks.items():
        rows[name] = {"accuracy": round(correct / n, 4) if n else 0.0, "n": n, "correct": correct}
    members = [name for name in rows if name.startswith("bbh:")]
    if members:
        correct, n = sum(rows[m]["correct"] for m in members), sum(rows[m]["n"] for m in members)
        rows["bbh"] = {"accuracy": round(correct / n, 4), "n": n, "correct": correct,
                       "macro_accuracy": round(sum(rows[m]["accuracy"] for m in members) / len(members), 4),
                       "subtasks": len(members)}
    path = run / "eval" / model / f"{suite}-{mode}" / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"model": model, "mode": mode, "answer_only": False, "self_consistency": 1, "limit": None, "tasks": rows}
    path.write_text(json.dumps(summary, indent=2))
    return path


def synthetic_run(root: Path, name: str = "synthetic", scale: float = 1.0, parameters: int | None = None) -> Path:
    """A run with paper-like numbers (math up with training, BBH down), both modes, a teacher row.
    `parameters`: write a model/ whose safetensors header holds that many parameters."""
    import struct

    run = root / name
    run.mkdir(parents=True)
    steps = [0, 100, 200, 300, 400]
    bbh_tasks = ["bbh:boolean_expressions", "bbh:date_understanding", "bbh:navigate"]
    for step in steps:
        model = "base" if step == 0 else f"step-{step}"
        gain = step / 400
        for mode, shift in (("few-shot", 2), ("zero-shot", 0)):
            dev = {
                "gsm8k-dev": (int(200 * min(0.9, scale * (0.04 + 0.18 * gain + 0.01 * shift))), 200),
                "svamp": (int(100 * min(0.9, scale * (0.10 + 0.22 * gain - 0.04 * gain * gain))), 100),
            }
            dev.update({t: (int(50 * max(0.0, 0.32 - 0.12 * gain + 0.02 * i)), 50) for i, t in enumerate(bbh_tasks)})
            write_summary(run, model, "dev", mode, dev)
    for model, gain in (("base", 0.0), ("step-300", 0.75), ("teacher", 3.0)):
        for mode, shift in (("few-shot", 0.02), ("zero-shot", 0.0)):
            s = scale if model != "teacher" else 1.0
            tasks = {
                "gsm8k": (int(1319 * min(0.95, s * (0.05 + 0.2 * gain) + shift)), 1319),
                "multiarith": (int(600 * min(0.97, s * (0.1 + 0.3 * gain) + shift)), 600),
                "asdiv": (int(2096 * min(0.95, s * (0.12 + 0.25 * gain) + shift)), 2096),
                "svamp": (int(998 * min(0.95, s * (0.1 + 0.2 * gain) + shift)), 998),
            }
            tasks.update({t: (int(250 * min(0.9, 0.3 - 0.1 * min(gain, 1) + (0.3 if model == "teacher" else 0))), 250)
                          for t in bbh_tasks})
            write_summary(run, model, "test", mode, tasks)
    history = [{"step": s, "loss": 0.6 + 2.4 * (0.985 ** s), "learning_rate": 5e-4} for s in range(10, 401, 10)]
    checkpoint = run / "train" / "checkpoint-400"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 400, "log_history": history}))
    (run / "selection.json").write_text(json.dumps({
        "criterion": "in_distribution", "picked": {"in_distribution": 300, "ood": 200, "mean": 300},
        "selected": [300], "dev": {}, "excluded_from_test": {"svamp": [f"svamp/test/{i}" for i in range(100)]},
    }))
    (run / "versions.json").write_text(json.dumps({"cotspec": "0.1.0", "torch": "2.4.0", "transformers": "4.56.0"}))
    (run / "config.yaml").write_text("student:\n  model: google/flan-t5-base\nteacher:\n  model: gpt-3.5\n")
    if parameters is not None:
        model_dir = run / "model"
        model_dir.mkdir()
        (model_dir / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
        header = json.dumps({"w": {"dtype": "F32", "shape": [parameters], "data_offsets": [0, 0]}}).encode()
        (model_dir / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return run
