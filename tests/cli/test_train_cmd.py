"""`cotspec train` through the real entry point: config errors, --print-config, and a short real run on
the embedded smollm2-135m-instruct whose checkpoint `cotspec eval` then scores."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import yaml

from cotspec.distill.config import load_config


def test_unknown_key_is_one_line_and_exit_2(run_cli, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("train:\n  lr: 1.0e-4\n  batchsize: 8\n  shuffle_buffer: 10\n")
    result = run_cli("train", "--config", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {config}:3: unknown key 'train.batchsize'; did you mean 'train.micro_batch_size'?"
    config.write_text("train:\n  lr: 1.0e-4\n  shuffle_buffer: 10\n")
    result = run_cli("train", "--config", config, "--out", tmp_path / "run")
    known = ", ".join(f.name for f in fields(load_config().train))
    assert result.stderr.strip() == f"error: {config}:3: unknown key 'train.shuffle_buffer'; known keys in train: {known}"
    assert not (tmp_path / "run").exists()


def test_bad_override_value_names_the_key(run_cli, tmp_path):
    result = run_cli("train", "--out", tmp_path / "run", "train.lr=fast")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: train.lr: must be a number, got 'fast'"


def test_print_config_resolves_file_flags_and_overrides(run_cli, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("student:\n  model: some/model\ntrain:\n  lr: 1.0e-3\n")
    result = run_cli("train", "--config", config, "--data", tmp_path / "data", "--print-config", "train.lr=2e-4", "loss.objective=ce")
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["student"]["model"] == "some/model"
    assert resolved["train"]["lr"] == 2e-4
    assert resolved["loss"]["objective"] == "ce"
    assert resolved["data"]["path"] == str(tmp_path / "data")
    assert "# Peak learning rate" in result.stdout


def test_resume_refuses_a_changed_config(run_cli, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "config.yaml").write_text("data:\n  gold: true\ntrain:\n  lr: 1.0e-3\n")
    result = run_cli("train", "--out", out, "data.gold=true", "train.lr=5e-4")
    assert result.exit_code == 2
    assert "train.lr=0.001, now 0.0005" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.real_model
def test_real_student_trains_and_its_checkpoint_evaluates(run_cli, tmp_path, data_dir, monkeypatch):
    """smollm2-135m-instruct on 4 GSM8K gold chains built on the fly, 2 steps, then `cotspec eval`."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    out = tmp_path / "student"
    result = run_cli(
        "train", "--out", out,
        "data.gold=true", "data.limit=4", "data.formats=zero_shot_cot", f"data.data_dir={data_dir}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.max_length=320",
        "train.global_batch_size=2", "train.micro_batch_size=1", "train.max_steps=2", "train.warmup_steps=0",
        "train.lr=1e-5", "train.log_every=1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["first_loss"] > 0
    assert (out / "data" / "build.json").is_file()  # built here from data.gold
    assert "| 2 |" in result.stdout

    evaluated = run_cli(
        "eval", "--model", out / "model", "--tasks", "gsm8k", "--mode", "zero-shot", "--limit", "2",
        "--max-new-tokens", "24", "--data-dir", data_dir, "--out", tmp_path / "eval",
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.stderr
    scored = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert scored["tasks"]["gsm8k"]["n"] == 2
