"""`cotspec run` end to end on a tiny student and the real llama.cpp teacher: the run directory layout,
a re-run that redoes nothing, refusals (a changed setting, a foreign run directory, an unreachable
teacher), --force-stage and --dry-run. The SIGKILL cases are in test_kill.py."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from cotspec.teacher.server import free_port
from support.faults import assert_one_line_error
from support.tiny_models import single_torch_thread  # noqa: F401 (fixture)

from .conftest import settings, write_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")

STAGES = ["eval_base", "sample", "build", "train", "eval_checkpoints", "select", "eval_selected", "report", "publish"]


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Counts model loads for evaluation, sampling stages, builds and training runs."""
    import cotspec.distill.run as distill_run
    import cotspec.formats as formats
    import cotspec.pipeline.evals as evals
    import cotspec.pipeline.teacher as teacher

    calls: Counter = Counter()

    def wrap(module, name, key):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    wrap(evals, "make_eval_backend", "model_loads")
    wrap(teacher, "sample", "sampling")
    wrap(formats, "build_training_data", "builds")
    wrap(distill_run, "run_training", "trainings")
    yield calls


@pytest.fixture(scope="module")
def world(tmp_path_factory, pipeline_student, pipeline_prompt, data_dir, llama_server_process):
    """A finished run of the tiny config (teacher: the session's llama.cpp server) and how to make more."""
    import os

    os.environ.setdefault("COTSPEC_PROGRESS", "plain")
    root = tmp_path_factory.mktemp("pipeline")
    cache = root / "token-cache"

    class World:
        tmp = root
        base_url = llama_server_process.base_url

        def config(self, name: str = "tiny", teacher: dict | None = None, **sections) -> Path:
            tree = settings(pipeline_student, pipeline_prompt, data_dir, cache,
                            {"base_urls": self.base_url} if teacher is None else teacher)
            for section, values in sections.items():
                if values is None:
                    tree[section] = None
                else:
                    tree[section] = {**(tree.get(section) or {}), **values}
            return write_config(root / f"{name}.yaml", tree)

    w = World()
    import cotspec.pipeline as pipeline

    w.finished = root / "finished"
    with pytest.MonkeyPatch.context() as patch:
        with counting(patch) as calls:
            pipeline.run(w.config(), out=w.finished)
    w.first_calls = Counter(calls)
    return w


def test_a_run_produces_the_layout(world):
    run = world.finished
    assert world.first_calls == Counter(model_loads=6, sampling=1, builds=1, trainings=1)
    for name in ["config.yaml", "state.json", "versions.json", "selection.json", "teacher/samples.db",
                 "data/build.json", "train/train_summary.json", "train/model/config.json", "model/config.json"]:
        assert (run / name).exists(), name
    state = json.loads((run / "state.json").read_text())
    for stage in STAGES:
        if stage == "report" and stage not in state["stages"]:
            continue  # the report engineer's write_report may not exist yet
        record = state["stages"][stage]
        assert record["status"] == "done" and record["inputs_sha256"] and record["summary"], stage
        assert {"seconds", "finished_at"} <= set(record)
    assert set(json.loads((run / "versions.json").read_text())) == {"cotspec", "torch", "transformers", "python"}
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "train").glob("checkpoint-*"))
    assert steps == [1, 2, 3]  # every checkpoint kept for selection
    for model in ["base", *(f"step-{s}" for s in steps)]:
        assert (run / "eval" / model / "dev-zero-shot" / "summary.json").is_file()
    selection = json.loads((run / "selection.json").read_text())
    assert set(selection["picked"]) == {"in_distribution", "ood", "mean"}
    assert selection["selected"] == [selection["picked"]["mean"]]
    assert set(selection["dev"]) == {"base", "step-1", "step-2", "step-3"}
    assert set(selection["excluded_from_test"]) == {"svamp"} and len(selection["excluded_from_test"]["svamp"]) == 2
    chosen = selection["selected"][0]
    test = json.loads((run / "eval" / f"step-{chosen}" / "test-zero-shot" / "summary.json").read_text())
    assert test["tasks"]["svamp"]["n"] == 2 and test["tasks"]["gsm8k"]["n"] == 2
    base_test = json.loads((run / "eval" / "base" / "test-zero-shot" / "summary.json").read_text())
    assert set(base_test["tasks"]) == set(test["tasks"])
    # the OOD dev slice is never a test question
    predicted = {json.loads(line)["id"] for line in (run / "eval" / "base" / "test-zero-shot" / "predictions" / "svamp.jsonl").read_text().splitlines()}
    assert not predicted & set(selection["excluded_from_test"]["svamp"])
    assert not (run / "model" / "optimizer.pt").exists() and (run / "model" / "model.safetensors").is_file()


def test_a_rerun_redoes_nothing(world, monkeypatch, run_cli):
    with counting(monkeypatch) as calls:
        result = run_cli("run", world.config(), "--out", world.finished)
    assert result.exit_code == 0, result.stderr
    assert sum(calls.values()) == 0, calls
    assert result.stderr.count("done earlier, skipped") >= 8


def test_a_changed_setting_is_refused_naming_the_key(world, run_cli):
    before = (world.finished / "state.json").read_text()
    result = run_cli("run", world.config(), "--out", world.finished, "train.lr=0.001")
    assert result.exit_code == 2
    line = assert_one_line_error(result)
    assert line.startswith("error: train.lr:") and "--force-stage train" in line
    result = run_cli("run", world.config(), "--out", world.finished, "teacher.temperature=0.9")
    assert "teacher.temperature" in assert_one_line_error(result)
    assert (world.finished / "state.json").read_text() == before


def test_a_longer_training_extends_the_run(world, monkeypatch, run_cli, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(world.finished, out)
    with counting(monkeypatch) as calls:
        result = run_cli("run", world.config(), "--out", out, "train.max_steps=4")
    assert result.exit_code == 0, result.stderr
    assert calls["sampling"] == 0 and calls["trainings"] == 1
    assert (out / "train" / "checkpoint-4").is_dir() and (out / "eval" / "step-4" / "dev-zero-shot" / "summary.json").is_file()
    assert "step-4" in json.loads((out / "selection.json").read_text())["dev"]


def test_force_stage_redoes_that_stage_and_what_uses_it(world, monkeypatch, run_cli, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(world.finished, out)
    (out / "selection.json").write_text("{}")
    with counting(monkeypatch) as calls:
        result = run_cli("run", world.config(), "--out", out, "--force-stage", "select", "select.criterion=in_distribution")
    assert result.exit_code == 0, result.stderr
    assert "redoing select, eval_selected, report, publish" in result.stderr
    assert calls["trainings"] == 0 and calls["sampling"] == 0 and calls["model_loads"] == 1  # the selected step's test eval
    assert json.loads((out / "selection.json").read_text())["criterion"] == "in_distribution"
    assert (out / "model" / "config.json").is_file()
    bad = run_cli("run", world.config(), "--out", out, "--force-stage", "trian")
    assert "no such stage" in assert_one_line_error(bad)


def test_until_stops_after_a_stage_and_a_later_run_goes_on(world, monkeypatch, run_cli, tmp_path):
    out = tmp_path / "run"
    config = world.config("until", teacher=None, eval={"base": False})
    with counting(monkeypatch) as calls:
        result = run_cli("run", config, "--out", out, "--until", "train")
    assert result.exit_code == 0, result.stderr
    assert calls["trainings"] == 1 and calls["model_loads"] == 0
    assert (out / "train" / "train_summary.json").is_file()
    assert not (out / "eval").exists() and not (out / "selection.json").exists()
    with counting(monkeypatch) as calls:
        result = run_cli("run", config, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert calls["trainings"] == 0 and calls["builds"] == 0
    assert (out / "selection.json").is_file() and (out / "model" / "config.json").is_file()
    bad = run_cli("run", config, "--out", out, "--until", "evaluate")
    assert "--until evaluate: no such stage" in assert_one_line_error(bad)


def test_dry_run_plans_without_running(world, monkeypatch, run_cli, tmp_path):
    import cotspec.pipeline.evals as evals

    monkeypatch.setattr(evals, "make_eval_backend", lambda config: pytest.fail("dry-run loaded a model"))
    finished = run_cli("run", world.config(), "--out", world.finished, "--dry-run")
    assert finished.exit_code == 0, finished.stderr
    assert all(f"{stage}" in finished.stdout for stage in STAGES)
    assert "skip" in finished.stdout and " run " not in finished.stdout
    dead = f"http://127.0.0.1:{free_port()}/v1"  # no network: the plan never asks the teacher
    fresh = run_cli("run", world.config("dead", teacher={"base_urls": dead}), "--out", tmp_path / "new", "--dry-run")
    assert fresh.exit_code == 0, fresh.stderr
    assert "2 questions x 2 chains = 4 chains" in fresh.stdout and "3 steps" in fresh.stdout
    assert "memory per device" in fresh.stdout and "evaluations:" in fresh.stdout
    assert not (tmp_path / "new").exists()


def test_an_unreachable_teacher_is_one_line_before_anything_runs(world, monkeypatch, run_cli, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with counting(monkeypatch) as calls:
        result = run_cli("run", world.config("dead", teacher={"base_urls": dead}), "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "teacher.base_urls" in assert_one_line_error(result) and dead in result.stderr
    assert sum(calls.values()) == 0
    assert not (tmp_path / "run" / "eval").exists()


def test_a_run_dir_of_another_config_or_command_is_refused(world, run_cli, tmp_path, pipeline_student):
    other = tmp_path / "other-student"
    shutil.copytree(pipeline_student, other)
    result = run_cli("run", world.config("other", student={"model": str(other)}), "--out", world.finished)
    assert result.exit_code == 2 and "student.model" in assert_one_line_error(result)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = run_cli("run", world.config(), "--out", foreign)
    assert result.exit_code == 2 and "cotspec run did not write" in assert_one_line_error(result)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_the_embedded_teacher_is_stopped_after_a_failed_sampling(world, monkeypatch, tmp_path):
    import cotspec.pipeline as pipeline
    import cotspec.teacher.sampler as sampler
    from cotspec.errors import CotspecError

    servers = []

    def failing(config, make_backend):
        import httpx

        assert httpx.get(config.base_urls[0] + "/models", timeout=10).status_code == 200  # it is up
        servers.append(config.base_urls[0])
        raise CotspecError("sampling stopped: simulated")

    monkeypatch.setattr(sampler, "run_sampling", failing)
    config = world.config("embedded", teacher={"server": "embedded", "server_n_ctx": 512}, eval={"base": False})
    with pytest.raises(CotspecError, match="simulated"):
        pipeline.run(config, out=tmp_path / "run")
    import httpx

    with pytest.raises(httpx.HTTPError):
        httpx.get(servers[0] + "/models", timeout=2)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["stages"]["sample"]["status"] == "running"


def _kill_inside(command: list[str], state_path: Path, stage: str, env: dict) -> None:
    """Start `command`, SIGKILL it as soon as state.json shows `stage` running."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            try:
                record = json.loads(state_path.read_text())["stages"].get(stage) or {}
            except (OSError, ValueError):
                record = {}
            if record.get("status") == "running":
                process.send_signal(signal.SIGKILL)
                process.wait()
                return
            if process.poll() is not None:
                pytest.fail(f"the run ended ({process.returncode}) before {stage} started: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        pytest.fail(f"{stage} never started")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _outcome(run: Path) -> dict:
    """What a run produced that does not depend on where it ran: chains, selection, accuracies, weights."""
    import sqlite3

    from safetensors.torch import load_file

    with sqlite3.connect(run / "teacher" / "samples.db") as db:
        chains = db.execute("SELECT question_id, sample_index, text FROM samples ORDER BY 1, 2").fetchall()
    selection = json.loads((run / "selection.json").read_text())
    summaries = {str(p.relative_to(run)): json.loads(p.read_text())["tasks"] for p in sorted((run / "eval").glob("*/*/summary.json"))}
    return {"chains": chains, "selection": {k: selection[k] for k in ("picked", "selected", "dev", "excluded_from_test")},
            "summaries": summaries, "weights": load_file(str(run / "model" / "model.safetensors"))}


def test_sigkill_inside_each_stage_then_a_rerun_equals_an_uninterrupted_run(world, tmp_path, monkeypatch):
    import os
    import sys

    import torch

    import cotspec.pipeline as pipeline

    out = tmp_path / "killed"
    config = world.config()
    env = {**os.environ, "COTSPEC_PROGRESS": "plain", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cotspec.cli.main", "run", str(config), "--out", str(out)]
    for stage in ["eval_base", "sample", "train", "eval_checkpoints", "eval_selected"]:
        _kill_inside(command, out / "state.json", stage, env)
    with counting(monkeypatch) as calls:
        pipeline.run(config, out=out)
    assert calls["sampling"] <= 1 and calls["trainings"] <= 1
    assert json.loads((out / "state.json").read_text())["stages"]["publish"]["status"] == "done"
    killed, uninterrupted = _outcome(out), _outcome(world.finished)
    assert killed["chains"] == uninterrupted["chains"]
    assert killed["selection"] == uninterrupted["selection"]
    assert killed["summaries"] == uninterrupted["summaries"]
    for name, tensor in uninterrupted["weights"].items():
        torch.testing.assert_close(killed["weights"][name], tensor)


SHIPPED = sorted(p for pattern in ("demo*.yaml", "cpu-*.yaml", "paper/*.yaml") for p in (Path(__file__).resolve().parents[2] / "configs").glob(pattern))


@pytest.mark.parametrize("config", SHIPPED or [None], ids=lambda p: "none" if p is None else p.name)
def test_shipped_pipeline_configs_pass_dry_run(config, run_cli, tmp_path, monkeypatch):
    if config is None:
        pytest.skip("no pipeline configs shipped yet (configs/demo*.yaml, configs/paper/*.yaml)")
    import cotspec.pipeline.evals as evals

    monkeypatch.setattr(evals, "make_eval_backend", lambda config: pytest.fail("dry-run loaded a model"))
    result = run_cli("run", config, "--out", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "train" in result.stdout and "memory per device" in result.stdout
    assert not (tmp_path / "run").exists()


def test_an_unfinished_evaluation_leaves_the_table_out_not_the_exit_status(world, monkeypatch, run_cli, tmp_path):
    """A run stopped early (--until) next to an evaluation an earlier run left unfinished: the work
    that was asked for is done, so the command succeeds and says why the table is missing."""
    out = tmp_path / "run"
    shutil.copytree(world.finished, out)
    (out / "eval" / "step-999" / "dev-zero-shot").mkdir(parents=True)
    with counting(monkeypatch) as calls:
        result = run_cli("run", world.config(), "--out", out, "--until", "select")
    assert result.exit_code == 0, result.stderr
    assert calls["model_loads"] == 0
    assert "no before/after table yet: " in result.stdout and "step-999" in result.stdout


def test_the_embedded_teacher_can_be_llama_server(world, tmp_path):
    """teacher.server_engine picks llama.cpp's C++ server for the sample stage: real sampling, with top-k."""
    import cotspec.pipeline as pipeline
    from cotspec.store import SampleStore

    config = world.config(
        "llama-server",
        teacher={"server": "embedded", "server_engine": "llama-server", "server_parallel": 2, "server_n_ctx": 512,
                 "top_logprobs": 5},
        eval={"base": False},
    )
    pipeline.run(config, out=tmp_path / "run", until="sample")
    store = SampleStore.open(tmp_path / "run" / "teacher" / "samples.db")
    samples = list(store.iter_samples(correct_only=False, with_topk=True))
    assert len(samples) == 4  # 2 questions x 2 chains
    assert all(s.has_logprobs and len(s.top_tokens) == len(s.tokens) > 0 for s in samples)
    assert all(1 <= len(candidates) <= 5 for s in samples for candidates in s.top_tokens)
