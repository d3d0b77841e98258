"""`cotspec report` and `write_report` / `write_model_card` on small run directories built in the test."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cotspec.errors import ConfigError, CotspecError
from cotspec.report import write_model_card, write_report
from cotspec.report.collect import parameter_count, read_run
from cotspec.report.model_card import hub_reference
from cotspec.report.tables import CELL

from report_runs import synthetic_run, write_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["overview", "table1", "tradeoff", "sampling", "loss", "config"]


def _png_is_a_real_figure(path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert width >= 500 and height >= 300, (path, pixels.shape)
    colors = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 50, f"{path}: {len(colors)} colors, not a drawn figure"
    assert (pixels[..., :3] < 0.5).mean() > 0.003, f"{path}: almost no dark pixels (no text or axes)"


def test_report_writes_pngs_and_an_html_page_with_every_section(run_copy):
    html_path = write_report(run_copy)

    out = run_copy / "report"
    assert html_path == out / "report.html"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["loss.png", "table1.png", "tradeoff.png", "yield.png"]
    for png in out.glob("*.png"):
        _png_is_a_real_figure(png)
    html = html_path.read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in html, anchor
    # Self-contained: every image is embedded, nothing is fetched.
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'src="(?!data:)', html)
    assert "<link" not in html
    md = (out / "report.md").read_text(encoding="utf-8")
    for png in pngs:
        assert f"]({png})" in md
    for heading in ["## Table 1: test accuracy", "## Specialization trade-off", "## Teacher sampling and alignment",
                    "## Training loss", "## Versions, stages and config"]:
        assert heading in md
    # The parts of the run that are there are reported, not skipped.
    assert "pass@4" in md and "teacher majority-vote accuracy | 33.3%" in md
    assert "**75.0%** of the target tokens" in md
    assert "| torch |" in md and "max_steps: 4" in md
    assert "SVAMP: the test numbers exclude the 2 questions" in md
    assert "| mean (used) | step 4 |" in md


def _table1(md: str) -> tuple[list[str], list[list[str]]]:
    block = md.split("## Table 1: test accuracy", 1)[1].strip().split("\n\n", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    split = lambda line: [cell.strip() for cell in line.strip("|").split(" | ")]  # noqa: E731
    return split(lines[0]), [split(line) for line in lines[2:]]


_MODEL_OF_ROW = [(re.compile(r"^base:"), "base"), (re.compile(r"^teacher:"), "teacher"),
                 (re.compile(r"^specialized, step (\d+)"), "step-{}")]
_LABELS = {"GSM8K": "gsm8k", "MultiArith": "multiarith", "ASDiv": "asdiv", "SVAMP": "svamp", "BBH": "bbh"}
_MODES = {"in-context": "few-shot", "zero-shot": "zero-shot"}


def _check_table1_against_summaries(run: Path) -> int:
    """Every Table-1 cell of report.md, parsed back, equals the summary.json it came from."""
    header, rows = _table1((run / "report" / "report.md").read_text(encoding="utf-8"))
    base_row = next(r for r in rows if r[0].startswith("base:"))
    checked = 0
    for row in rows:
        model = None
        for pattern, name in _MODEL_OF_ROW:
            match = pattern.match(row[0])
            if match:
                model = name.format(*match.groups())
        assert model is not None, row[0]
        for column, cell, base_cell in zip(header[1:], row[1:], base_row[1:]):
            task, mode = re.match(r"^(\S+) \((.+)\)$", column).groups()
            summary = json.loads((run / "eval" / model / f"test-{_MODES[mode]}" / "summary.json").read_text())
            truth = summary["tasks"][_LABELS[task]]
            parsed = CELL.match(cell)
            assert parsed, cell
            p, n = truth["accuracy"], truth["n"]
            assert float(parsed["acc"]) == pytest.approx(round(100 * p, 1), abs=0.051)
            assert (int(parsed["correct"]), int(parsed["n"])) == (truth["correct"], n)
            assert float(parsed["se"]) == pytest.approx(100 * math.sqrt(p * (1 - p) / n), abs=0.051)
            if model == "base":
                assert parsed["delta"] is None
            else:
                base_truth = json.loads((run / "eval" / "base" / f"test-{_MODES[mode]}" / "summary.json").read_text())
                delta = 100 * (p - base_truth["tasks"][_LABELS[task]]["accuracy"])
                assert float(parsed["delta"]) == pytest.approx(delta, abs=0.051)
            checked += 1
    return checked


def test_table1_numbers_equal_the_real_summary_files(run_copy):
    write_report(run_copy)
    # base and step-4, 2 in-context columns (gsm8k, svamp) + 5 zero-shot ones
    assert _check_table1_against_summaries(run_copy) == 2 * 7


def test_table1_numbers_equal_the_summary_files_with_a_teacher_row(tmp_path):
    run = synthetic_run(tmp_path)
    write_report(run)
    header, rows = _table1((run / "report" / "report.md").read_text(encoding="utf-8"))
    assert header[1:] == [f"{t} (in-context)" for t in ["GSM8K", "MultiArith", "ASDiv", "SVAMP", "BBH"]] + [
        f"{t} (zero-shot)" for t in ["GSM8K", "MultiArith", "ASDiv", "SVAMP", "BBH"]]
    assert [r[0].split(":")[0] for r in rows] == ["base", "specialized, step 300 (selected)", "teacher"]
    assert _check_table1_against_summaries(run) == 3 * 10


def test_missing_parts_are_skipped_with_a_line(tmp_path):
    run = tmp_path / "bare"
    write_summary(run, "base", "test", "zero-shot", {"gsm8k": (3, 10)})
    html = write_report(run)

    md = html.with_name("report.md").read_text(encoding="utf-8")
    assert "| base: `base` | 30.0 ± 14.5 (3/10) |" in md
    assert "Not evaluated on the test sets: in-context" in md
    assert "No specialized checkpoint was evaluated on the test sets yet." in md
    assert "no teacher row" in md
    assert "Skipped: no dev-set evaluations" in md
    assert "No checkpoint selection yet" in md
    assert "Skipped: no teacher sample store" in md
    assert "Alignment coverage: not recorded" in md
    assert "Skipped: no training loss recorded" in md
    assert "Versions: not recorded" in md
    assert sorted(p.name for p in html.parent.glob("*.png")) == ["table1.png"]
    for anchor in SECTIONS + ["skipped"]:
        assert f'<section id="{anchor}">' in html.read_text(encoding="utf-8")


def test_an_empty_run_directory_still_reports(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    md = write_report(run).with_name("report.md").read_text(encoding="utf-8")
    assert "Skipped: no test-set evaluation yet" in md
    assert "no evaluations:" in md


@pytest.mark.parametrize("damage", ["corrupt", "missing", "no tasks"])
def test_a_bad_summary_is_one_line_naming_the_file(tmp_path, damage, run_cli):
    run = synthetic_run(tmp_path)
    summary = run / "eval" / "step-300" / "test-zero-shot" / "summary.json"
    if damage == "corrupt":
        summary.write_text('{"model": "x", "tasks": {"gsm8k": {"accur')
    elif damage == "missing":
        summary.unlink()
    else:
        summary.write_text('{"model": "x"}')
    with pytest.raises(CotspecError) as caught:
        write_report(run)
    message = str(caught.value)
    assert str(summary) in message and "\n" not in message

    result = run_cli("report", str(run))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and str(summary) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_writes_the_report_and_the_model_card(run_copy, run_cli):
    result = run_cli("report", str(run_copy))
    assert result.exit_code == 0, result.stderr
    assert (run_copy / "report" / "report.html").is_file()
    card = (run_copy / "model" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and "chain-of-thought" in meta["tags"]
    assert meta["datasets"] == ["openai/gsm8k"]
    assert "base_model" not in meta  # a local directory is no hub id
    build = json.loads((run_copy / "data" / "build.json").read_text())
    assert build["content_sha256"] in card
    assert "Q: Natalia sold clips" in card and "Let's think step by step" in card
    assert "| model | GSM8K (in-context) |" in card
    assert "max_steps: 4" in card
    # model-index results are those of the selected checkpoint
    results = meta["model-index"][0]["results"]
    assert len(results) == 7 and all(r["metrics"][0]["type"] == "accuracy" for r in results)


def test_model_card_needs_a_selected_model(tmp_path):
    run = synthetic_run(tmp_path)
    with pytest.raises(CotspecError, match="no selected model"):
        write_model_card(run)


def test_model_card_front_matter_names_the_base_model_and_license(tmp_path):
    assert hub_reference("smollm2-135m-instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    assert hub_reference("google/flan-t5-base") == ("google/flan-t5-base", None)
    run = synthetic_run(tmp_path, parameters=1000)
    text = write_model_card(run).read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == "google/flan-t5-base"
    assert meta["pipeline_tag"] == "text2text-generation"
    assert "AutoModelForSeq2SeqLM" in text


def test_several_runs_make_a_scaling_plot(tmp_path):
    runs = [synthetic_run(tmp_path, "small", 1.0, 250_000_000), synthetic_run(tmp_path, "large", 1.4, 780_000_000)]
    html = write_report(runs, out=tmp_path / "joint")

    pngs = sorted(p.name for p in html.parent.glob("*.png"))
    assert pngs == ["large-table1.png", "large-tradeoff.png", "loss.png", "scaling.png", "small-table1.png",
                    "small-tradeoff.png"]
    _png_is_a_real_figure(html.parent / "scaling.png")
    md = html.with_name("report.md").read_text(encoding="utf-8")
    assert "## small: Table 1: test accuracy" in md and "## large: Table 1: test accuracy" in md
    assert "| large | `google/flan-t5-base` | `gpt-3.5` | 780.0M |" in md

    with pytest.raises(ConfigError, match="out: is required with 2 run directories"):
        write_report(runs)


def test_scaling_is_skipped_without_parameter_counts(tmp_path):
    runs = [synthetic_run(tmp_path, "a"), synthetic_run(tmp_path, "b")]
    md = write_report(runs, out=tmp_path / "joint").with_name("report.md").read_text(encoding="utf-8")
    assert "Skipped: the scaling plot needs" in md


def test_rewriting_replaces_the_figures_and_refuses_foreign_files(tmp_path):
    run = synthetic_run(tmp_path)
    out = write_report(run).parent
    (out / "stale.png").write_bytes(b"x")
    write_report(run)
    assert not (out / "stale.png").exists()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        write_report(run)


def test_parameter_count_reads_the_safetensors_header(real_run):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(real_run / "model")
    assert parameter_count(real_run / "model") == sum(p.numel() for p in model.parameters())
    assert read_run(real_run).parameters == parameter_count(real_run / "model")


def test_loss_falls_back_to_the_train_summary(tmp_path):
    run = synthetic_run(tmp_path)
    shutil.rmtree(run / "train" / "checkpoint-400")
    (run / "train" / "train_summary.json").write_text(json.dumps({"steps": 50, "first_loss": 3.0, "last_loss": 1.0}))
    loss = read_run(run).loss
    assert loss is not None and loss.steps == [1, 50] and loss.losses == [3.0, 1.0]
