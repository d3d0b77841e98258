"""Issue 8 fault table for `cotspec train` (and `cotspec eval --model`, which loads models the same way),
every case through the real entry point.

Each case prepares files, runs one command, and checks the contract: the exit status; for a refusal,
exactly one `error:` line naming what is wrong and no traceback; and the prior outputs byte for byte as
they were (`snapshot` before and after). Cases that must succeed check their result instead.

The student is a tiny random Llama; the runs train 1-3 steps on 2 GSM8K gold chains. Read-only media:
tests run as root, for whom permission bits stop nothing, and the --out check asks the kernel
(`os.access`), so read-only cases answer that question as read-only media would.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from cotspec.distill.rundir import STAGING_DIR, TRAINER_STATE
from models.broken_models import BROKEN_MODELS
from support.faults import assert_one_line_error, snapshot
from support.tiny_models import ascii_tokenizer, single_torch_thread, tiny_llama  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@dataclass
class World:
    """The files one case works on: a private tmp dir, the real data, a tiny model, a finished tiny run."""

    tmp: Path
    data_dir: Path
    good_model: Path
    finished_template: Path
    token_cache: Path

    @property
    def media(self) -> Path:
        """The directory read-only cases see as read-only media."""
        path = self.tmp / "media"
        path.mkdir(exist_ok=True)
        return path

    def train_args(self, out: Path, *overrides: str, model: Path | None = None) -> list:
        settings = run_settings(model or self.good_model, self.data_dir, self.token_cache)
        return ["train", "--out", out, *settings, *overrides]

    def eval_args(self, model: Path) -> list:
        return ["eval", "--model", model, "--tasks", "gsm8k", "--mode", "zero-shot", "--limit", "1",
                "--max-new-tokens", "4", "--data-dir", self.data_dir, "--out", self.tmp / "eval"]  # fmt: skip

    def finished_run(self, where: Path | None = None) -> Path:
        """A copy of a finished 2-step run (checkpoint-1, checkpoint-2, model/, train_summary.json)."""
        out = (where or self.tmp) / "run"
        shutil.copytree(self.finished_template, out)
        return out


def run_settings(model: Path, data_dir: Path, token_cache: Path) -> list[str]:
    """2 gold chains, 1 row per step: 2 steps per epoch, so max_steps=2 ends on an epoch and 3 inside one."""
    return [
        f"student.model={model}", "data.gold=true", "data.limit=2", "data.formats=zero_shot_cot",
        f"data.data_dir={data_dir}", f"data.cache_dir={token_cache}", "data.max_length=1024",
        "train.precision=fp32", "train.global_batch_size=1", "train.micro_batch_size=1", "train.max_steps=2",
        "train.save_every=1", "train.warmup_steps=0", "train.log_every=1",
    ]  # fmt: skip


@dataclass(frozen=True)
class Case:
    id: str
    command: Callable[[World], list]
    """Prepares the case's files and returns the command."""
    error: tuple[str, ...] | None = None
    """Fragments of the expected one-line error; None: the command must succeed."""
    kept: Callable[[World], list[Path]] = lambda world: [world.tmp]
    """Prior outputs that must come out byte-identical (default: everything the case made)."""
    check: Callable[[World, object], None] | None = None
    """Further checks of a successful command."""
    read_only: bool = False
    """world.media is read-only media."""


# --- D1: a finished run re-run does nothing --------------------------------------------------------------


def says_nothing_to_do(world: World, result) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "finished at step 2" in lines[0] and "nothing to do" in lines[0], result.stderr


# --- D2: what a kill while writing a checkpoint leaves behind ----------------------------------------------


def killed_while_writing_checkpoint_3(world: World) -> list:
    out = world.finished_run()
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    (out / "checkpoint-3" / TRAINER_STATE).unlink()
    (out / STAGING_DIR / "model").mkdir(parents=True)
    (out / STAGING_DIR / "model" / "config.json").write_text("{")
    return world.train_args(out, "train.max_steps=3")


def resumed_from_checkpoint_2(world: World, result) -> None:
    out = world.tmp / "run"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["resumed_from"] == str(out / "checkpoint-2")
    assert "removed checkpoint-3" in result.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert (out / "checkpoint-3" / TRAINER_STATE).is_file() and not (out / STAGING_DIR).exists()


# --- D8: models that cannot load ------------------------------------------------------------------------


def with_broken_model(name: str, command: str) -> Callable[[World], list]:
    def prepare(world: World) -> list:
        model = BROKEN_MODELS[name].build(world.tmp, world.good_model)
        return world.train_args(world.tmp / "run", model=model) if command == "train" else world.eval_args(model)

    return prepare


def model_case(name: str, command: str, path_name: str) -> Case:
    return Case(f"D8-{command}-{name}", with_broken_model(name, command), (path_name, *BROKEN_MODELS[name].says))


# --- D12: learning rates no optimizer can use -------------------------------------------------------------


def finished_run_with(*overrides: str) -> Callable[[World], list]:
    return lambda world: world.train_args(world.finished_run(), *overrides)


# --- --out that is a file, under a file, or read-only -----------------------------------------------------


def a_file(world: World) -> Path:
    path = world.tmp / "notes.txt"
    path.write_text("mine\n")
    return path


CASES = [
    Case("D1-rerun-of-a-finished-run", finished_run_with(), check=says_nothing_to_do),
    Case("D1-finished-run-on-read-only-media", lambda w: w.train_args(w.finished_run(w.media)), read_only=True,
         check=says_nothing_to_do),
    Case("D2-incomplete-checkpoint-and-staging-leftovers", killed_while_writing_checkpoint_3,
         kept=lambda w: [w.tmp / "run" / "data"], check=resumed_from_checkpoint_2),
    model_case("garbage-gguf", "train", "garbage.gguf"),
    model_case("config-not-json", "train", "config-not-json/config.json"),
    model_case("unknown-model-type", "train", "unknown-type/config.json"),
    model_case("no-weights", "train", "no-weights"),
    model_case("garbage-gguf", "eval", "garbage.gguf"),
    model_case("config-not-json", "eval", "config-not-json/config.json"),
    model_case("unknown-model-type", "eval", "unknown-type/config.json"),
    model_case("no-weights", "eval", "no-weights"),
    Case("D12-lr-inf", finished_run_with("train.lr=inf"), ("train.lr", "finite")),
    Case("D12-lr-nan", finished_run_with("train.lr=nan"), ("train.lr", "finite")),
    Case("D12-lr-negative", finished_run_with("train.lr=-1e-4"), ("train.lr", "> 0")),
    Case("out-is-a-file", lambda w: w.train_args(a_file(w)), ("--out", "notes.txt", "is a file")),
    Case("out-under-a-file", lambda w: w.train_args(a_file(w) / "run"), ("--out", "notes.txt", "is a file")),
    Case("out-read-only", lambda w: w.train_args(w.finished_run(w.media), "train.max_steps=3"),
         ("--out", "media", "read-only"), read_only=True),
]  # fmt: skip


# --- fixtures -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    good_model: Path
    finished_run: Path
    token_cache: Path


@pytest.fixture(scope="module")
def templates(tmp_path_factory, data_dir) -> Templates:
    """A tiny model and a finished 2-step run on it, made once and copied per case."""
    from cotspec.distill.config import load_config
    from cotspec.distill.run import run_training

    root = tmp_path_factory.mktemp("templates")
    tokenizer = ascii_tokenizer()
    tiny_llama(tokenizer).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    settings = run_settings(root / "model", data_dir, root / "token-cache")
    run_training(load_config(None, [*settings, f"out={root / 'run'}"]))
    return Templates(root / "model", root / "run", root / "token-cache")


def deny_writes_under(monkeypatch, root: Path) -> None:
    """`os.access` answers for `root` as it does on read-only media (EROFS), for root too."""
    real_access = os.access
    root = root.resolve()

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(root):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


# --- the table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault(case: Case, tmp_path, data_dir, templates, run_cli, monkeypatch):
    monkeypatch.setenv("COTSPEC_OFFLINE", "1")
    world = World(tmp_path, data_dir, templates.good_model, templates.finished_run, templates.token_cache)
    args = case.command(world)
    if case.read_only:
        deny_writes_under(monkeypatch, world.media)
    before = snapshot(*case.kept(world))
    result = run_cli(*args)
    assert "Traceback" not in result.stderr, result.stderr
    if case.error is None:
        assert result.exit_code == 0, result.stderr
        if case.check is not None:
            case.check(world, result)
    else:
        assert_one_line_error(result, *case.error)
    assert snapshot(*case.kept(world)) == before
