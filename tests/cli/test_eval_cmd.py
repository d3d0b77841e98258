"""`cotspec eval` end to end: tiny random models built here, real benchmark files, real prediction files."""

from __future__ import annotations

import json
import shutil

import pytest
from support.tiny_models import save_model_dir, tiny_llama_dir, tiny_t5  # noqa: F401 (fixture)
from transformers import ByT5Tokenizer


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    tokenizer = ByT5Tokenizer()
    model = tiny_t5(tokenizer, d_model=32, d_kv=8, d_ff=64, initializer_factor=1.0)
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("tiny-t5"))


def _eval_args(model_dir, out, data_dir, *extra):
    return ("eval", "--model", model_dir, "--tasks", "gsm8k,svamp,bbh:navigate,bbh:snarks", "--mode",
            "zero-shot", "--limit", "3", "--max-new-tokens", "6", "--batch-size", "4",
            "--data-dir", data_dir, "--out", out, *extra)


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_t5_dir"])
def test_eval_writes_predictions_summary_and_resumes(model_fixture, request, tmp_path, data_dir, run_cli):
    model_dir = request.getfixturevalue(model_fixture)
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    out = tmp_path / "run"

    first = run_cli(*_eval_args(copy, out, data_dir))
    assert first.exit_code == 0, first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(copy) and summary["mode"] == "zero-shot"
    assert set(summary["tasks"]) == {"gsm8k", "svamp", "bbh:navigate", "bbh:snarks", "bbh"}
    assert summary["tasks"]["gsm8k"]["n"] == 3
    assert summary["tasks"]["bbh"]["n"] == 6 and summary["tasks"]["bbh"]["subtasks"] == 2
    lines = (out / "predictions" / "gsm8k.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [f"gsm8k/test/{i}" for i in range(3)]
    assert {"prompt", "output", "extracted", "gold", "correct"} <= set(records[0])
    assert records[0]["gold"] == "18" and records[0]["prompt"].startswith("Q: Janet")
    assert (out / "predictions" / "bbh" / "snarks.jsonl").exists()
    assert "| gsm8k | 3 |" in first.stdout

    # Resume: with every prediction on disk the model is never loaded, so removing it changes nothing.
    shutil.rmtree(copy)
    second = run_cli(*_eval_args(copy, out, data_dir))
    assert second.exit_code == 0, second.stderr
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "predictions" / "gsm8k.jsonl").read_text().splitlines() == lines


def test_resume_generates_only_the_missing_examples(tiny_llama_dir, tmp_path, data_dir, run_cli):
    out = tmp_path / "run"
    assert run_cli(*_eval_args(tiny_llama_dir, out, data_dir)).exit_code == 0
    gsm8k = out / "predictions" / "gsm8k.jsonl"
    kept = gsm8k.read_text().splitlines()[:1]
    gsm8k.write_text(kept[0] + "\n" + '{"id": "gsm8k/test/1", "tor')  # a kill mid-write
    assert run_cli(*_eval_args(tiny_llama_dir, out, data_dir)).exit_code == 0
    ids = [json.loads(line)["id"] for line in gsm8k.read_text().splitlines()]
    assert ids == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]


def test_self_consistency_records_votes(tiny_llama_dir, tmp_path, data_dir, run_cli):
    out = tmp_path / "run"
    result = run_cli("eval", "--model", tiny_llama_dir, "--tasks", "multiarith", "--mode", "few-shot",
                     "--limit", "2", "--max-new-tokens", "4", "--self-consistency", "3",
                     "--data-dir", data_dir, "--out", out)
    assert result.exit_code == 0, result.stderr
    record = json.loads((out / "predictions" / "multiarith.jsonl").read_text().splitlines()[0])
    assert len(record["outputs"]) == 3
    assert sum(record["votes"].values()) <= 3


def test_changed_settings_refuse_to_mix_into_a_run(tiny_llama_dir, tmp_path, data_dir, run_cli):
    out = tmp_path / "run"
    assert run_cli(*_eval_args(tiny_llama_dir, out, data_dir)).exit_code == 0
    result = run_cli(*_eval_args(tiny_llama_dir, out, data_dir)[:-2], "--out", out, "--max-new-tokens", "9")
    assert result.exit_code == 2
    assert "max_new_tokens=6" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--tasks", "gsm9k"), "gsm9k"),
        (("--model", "no/such-model-anywhere"), "no/such-model-anywhere"),
        (("--limit", "0"), "--limit"),
    ],
)
def test_bad_input_is_one_line(args, expected, tiny_llama_dir, tmp_path, data_dir, run_cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = dict(zip(("--model", "--tasks", "--limit"), (str(tiny_llama_dir), "gsm8k", "2")))
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for pair in base.items() for x in pair]
    result = run_cli("eval", *flat, "--data-dir", data_dir, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_data_dir_names_the_file(tiny_llama_dir, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COTSPEC_OFFLINE", "1")
    result = run_cli("eval", "--model", tiny_llama_dir, "--tasks", "svamp", "--data-dir", tmp_path / "nowhere",
                     "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "SVAMP.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_finished_run_reads_no_model_file_again(tiny_llama_dir, tmp_path, data_dir, run_cli, monkeypatch):
    # The model is identified by the hashes of its files (run.json), yet re-summarizing stays instant:
    # files whose size and mtime are unchanged are not read again.
    out = tmp_path / "run"
    assert run_cli(*_eval_args(tiny_llama_dir, out, data_dir)).exit_code == 0
    recorded = json.loads((out / "run.json").read_text())["model_files"]
    assert {"config.json", "model.safetensors"} <= set(recorded)

    def no_hashing(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr("cotspec.evaluate.model_files.sha256_file", no_hashing)
    again = run_cli(*_eval_args(tiny_llama_dir, out, data_dir))
    assert again.exit_code == 0, again.stderr
