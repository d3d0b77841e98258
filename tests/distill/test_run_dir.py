"""The run directory across re-runs and kills: a finished run is left alone, a longer one continues, and a
checkpoint cut short by a kill is never resumed from.

The tiny fixtures train 6 optimizer steps per epoch; runs here stop after 2 or 3, in the middle of an
epoch, where transformers resumed a finished run mid-epoch and trained one more step before checking
max_steps (issue 8, D1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from support.faults import snapshot
from transformers import AutoModelForCausalLM

from cotspec.distill.config import to_yaml
from cotspec.distill.rundir import STAGING_DIR, TRAINER_STATE
from cotspec.distill.run import run_training
from distill_support import assert_same_weights

TWO_STEPS = ("train.max_steps=2", "train.save_every=1")


def checkpoints(out: Path) -> list[str]:
    return sorted(path.name for path in out.glob("checkpoint-*"))


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_rerun_of_a_finished_run_changes_nothing(tiny_llama_dir, kd_data, train_config, tmp_path, capsys, monkeypatch):
    config = train_config(tiny_llama_dir, kd_data, *TWO_STEPS)
    first = run_training(config)
    out = tmp_path / "run"
    finished = snapshot(out)
    capsys.readouterr()

    again = run_training(config)
    assert checkpoints(out) == ["checkpoint-1", "checkpoint-2"]  # no 3rd step
    assert snapshot(out) == finished  # model/, checkpoints, summary and config byte for byte
    assert again == first
    (line,) = stderr_lines(capsys)
    assert "finished at step 2" in line and "nothing to do" in line and "train.max_steps" in line

    # Nothing is loaded to find that out.
    def no_loading(*args, **kwargs):
        raise AssertionError("a finished run loaded its student")

    monkeypatch.setattr("cotspec.models.load_model", no_loading)
    run_training(config)
    assert snapshot(out) == finished


def test_lower_max_steps_on_a_finished_run_is_nothing_to_do(tiny_llama_dir, kd_data, train_config, tmp_path, capsys):
    run_training(train_config(tiny_llama_dir, kd_data, *TWO_STEPS))
    finished = snapshot(tmp_path / "run")
    capsys.readouterr()
    run_training(train_config(tiny_llama_dir, kd_data, "train.max_steps=1", "train.save_every=1"))
    assert snapshot(tmp_path / "run") == finished
    assert "nothing to do" in stderr_lines(capsys)[0]


def test_epoch_based_finished_run_is_nothing_to_do(tiny_llama_dir, kd_data, train_config, tmp_path):
    """Half an epoch: transformers' own max_steps (3 of 6) is not a whole number of epochs either."""
    config = train_config(tiny_llama_dir, kd_data, "train.max_steps=null", "train.epochs=0.5", "train.save_every=1")
    assert run_training(config)["steps"] == 3
    finished = snapshot(tmp_path / "run")
    run_training(config)
    assert snapshot(tmp_path / "run") == finished


def test_larger_max_steps_continues_a_finished_run(tiny_llama_dir, kd_data, train_config, tmp_path):
    run_training(train_config(tiny_llama_dir, kd_data, *TWO_STEPS))
    summary = run_training(train_config(tiny_llama_dir, kd_data, "train.max_steps=3", "train.save_every=1"))
    assert summary["steps"] == 3
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert checkpoints(tmp_path / "run") == ["checkpoint-2", "checkpoint-3"]
    assert_same_weights(tmp_path / "run" / "model", tmp_path / "run" / "checkpoint-3", AutoModelForCausalLM)


def test_killed_after_its_last_checkpoint_finishes_without_training(
    tiny_llama_dir, kd_data, train_config, tmp_path, capsys
):
    """The final checkpoint is on disk, model/ and the summary are not: they are written from it, no step runs."""
    config = train_config(tiny_llama_dir, kd_data, *TWO_STEPS)
    run_training(config)
    out = tmp_path / "run"
    shutil.rmtree(out / "model")
    (out / "train_summary.json").unlink()
    trained = snapshot(out / "checkpoint-1", out / "checkpoint-2")
    capsys.readouterr()

    summary = run_training(config)
    assert summary["steps"] == 2
    assert summary["train_loss"] is None  # no step ran here (the Trainer would say 0.0)
    assert checkpoints(out) == ["checkpoint-1", "checkpoint-2"]
    assert snapshot(out / "checkpoint-1", out / "checkpoint-2") == trained
    assert_same_weights(out / "model", out / "checkpoint-2", AutoModelForCausalLM)
    assert any("already at step 2" in line for line in stderr_lines(capsys))


def test_incomplete_checkpoint_and_staging_leftovers_are_cleaned_and_the_run_resumes(
    tiny_llama_dir, kd_data, train_config, tmp_path
):
    """As left by a kill while checkpoint-3 was written: its files but no trainer_state.json (as an older
    cotspec wrote checkpoints in place), and a half-written staging directory."""
    run_training(train_config(tiny_llama_dir, kd_data, *TWO_STEPS))
    out = tmp_path / "run"
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    (out / "checkpoint-3" / TRAINER_STATE).unlink()
    partial = out / STAGING_DIR / "checkpoint-4"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")

    summary = run_training(train_config(tiny_llama_dir, kd_data, "train.max_steps=4", "train.save_every=1"))
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["steps"] == 4
    assert checkpoints(out) == ["checkpoint-3", "checkpoint-4"]
    for name in checkpoints(out):
        assert json.loads((out / name / TRAINER_STATE).read_text())["global_step"] == int(name.split("-")[1])
    assert not (out / STAGING_DIR).exists()


# Runs in a child process: the whole point is a SIGKILL in the middle of writing checkpoint-2.
_KILLED_WHILE_SAVING = """
import os, signal, sys
from pathlib import Path
from transformers import Trainer
from cotspec.distill.config import load_config
from cotspec.distill.run import run_training

def die_after_the_weights_and_optimizer(self, output_dir):
    if self.state.global_step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)

original = Trainer._save_rng_state
Trainer._save_rng_state = die_after_the_weights_and_optimizer
run_training(load_config(Path(sys.argv[1])))
"""


def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_previous_one(
    tiny_llama_dir, kd_data, train_config, tmp_path
):
    config = train_config(tiny_llama_dir, kd_data, "train.max_steps=3", "train.save_every=1")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(to_yaml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_SAVING, str(config_file)], env=env, capture_output=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    out = tmp_path / "run"
    assert checkpoints(out) == ["checkpoint-1"]  # the half-written one is not under a checkpoint name
    assert (out / STAGING_DIR / "checkpoint-2" / "model.safetensors").is_file()

    summary = run_training(config)
    assert summary["resumed_from"].endswith("checkpoint-1")
    assert summary["steps"] == 3
    assert checkpoints(out) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / STAGING_DIR).exists()
