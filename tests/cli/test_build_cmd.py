"""`cotspec build` through the real entry point: a gold build end to end, and one-line errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from datasets import load_from_disk


def test_build_gold_limit_20(tmp_path, data_dir, run_cli):
    out = tmp_path / "data"
    result = run_cli("build", "--gold", "--limit", "20", "--data-dir", data_dir, "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = load_from_disk(str(out))["train"]
    assert Counter(rows["format"]) == {"zero_shot_answer": 20, "zero_shot_cot": 20, "in_context_answer": 20, "in_context_cot": 20}
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["rows"] == 80 and manifest["questions"] == 20
    assert manifest["config"]["limit"] == 20 and manifest["config"]["gold"] is True
    assert "| in_context_cot | - | 20 | 25.0% | 0 |" in result.stdout
    assert manifest["content_sha256"][:16] in result.stdout


def test_build_formats_and_weights_flags(tmp_path, data_dir, run_cli):
    out = tmp_path / "data"
    result = run_cli("build", "--gold", "--limit", "10", "--formats", "zero_shot_cot,in_context_answer",
                     "--weights", "3,1", "--shots", "2", "--data-dir", data_dir, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = load_from_disk(str(out))["train"]
    assert Counter(rows["format"]) == {"zero_shot_cot": 15, "in_context_answer": 5}
    assert {len(ids) for ids, fmt in zip(rows["exemplar_ids"], rows["format"]) if fmt == "in_context_answer"} == {2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--store", "{tmp}/nope.db"), "error: --store: {tmp}/nope.db: no such file"),
        (("--gold", "--formats", "zero_shot_cot,cot_only"), "error: --formats: unknown format 'cot_only'"),
        (("--gold", "--weights", "1,2"), "error: --weights: has 2 values but --formats names 4 formats"),
        (("--gold", "--weights", "1,2,x,4"), "error: --weights: must be a number, got 'x'"),
        ((), "error: --store: nothing to build from: give --store"),
    ],
)
def test_bad_input_is_one_line(tmp_path, data_dir, run_cli, args, message):
    args = tuple(a.format(tmp=tmp_path) for a in args)
    result = run_cli("build", *args, "--data-dir", data_dir, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(tmp=tmp_path))
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_store_that_is_not_a_store(tmp_path, data_dir, run_cli):
    bogus = tmp_path / "run.db"
    bogus.write_text("not sqlite at all, just text that is long enough to have a header" * 20)
    result = run_cli("build", "--store", bogus, "--data-dir", data_dir, "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {bogus}: ")
    assert result.stderr.count("\n") == 1
