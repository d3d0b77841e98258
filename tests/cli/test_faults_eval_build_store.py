"""Issue 8 fault table for `cotspec eval`, `build` and `store`, every case through the real entry point.

Each case prepares files, runs one command, and checks the contract: the exit status; for a refusal,
exactly one `error:` line naming what is wrong and no traceback; and the prior outputs byte for byte
as they were (`snapshot` before and after). Cases that must succeed check their result instead.

Read-only media: tests run as root, for whom `chmod` stops nothing, so the read-only cases run the CLI
in a child process inside a private mount namespace where their directory is a read-only bind mount
(EROFS for root too, exactly as on real read-only media). The namespace dies with the child, leaving no
mount behind. Where namespaces are not allowed (no CAP_SYS_ADMIN) those cases are skipped; the same code
paths are covered in-process by the store and output-check tests with `os.access` patched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from cotspec.store import SampleStore
from support.faults import assert_one_line_error, snapshot
from support.sample_rows import examples, make_row, run_config
from support.tiny_models import ascii_tokenizer, single_torch_thread, tiny_llama  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

QUESTIONS = [{"question": "What is 2 + 3?", "answer": 5}, {"question": "What is 4 - 1?", "answer": 3}]


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama with its tokenizer as a save_pretrained directory (weights differ by seed)."""
    tokenizer = ascii_tokenizer()
    tiny_llama(tokenizer, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass
class World:
    """The files one case works on: a private tmp dir, the real data, a tiny model, a tiny gold build."""

    tmp: Path
    data_dir: Path
    model_template: Path
    build_template: Path
    media: Path = field(init=False)
    """The directory the read-only cases see as read-only media."""

    def __post_init__(self) -> None:
        self.media = self.tmp / "media"
        self.media.mkdir(exist_ok=True)

    def model(self) -> Path:
        """A private copy of the tiny model (a case may retrain it in place)."""
        target = self.tmp / "model"
        if not target.exists():
            shutil.copytree(self.model_template, target)
        return target

    def task_file(self, name: str, lines: list[dict] | bytes = QUESTIONS, where: Path | None = None) -> Path:
        path = (where or self.tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = lines if isinstance(lines, bytes) else "".join(json.dumps(line) + "\n" for line in lines).encode()
        path.write_bytes(raw)
        return path

    def eval_args(self, *tasks: Path | str, out: Path, model: Path | str | None = None, extra: tuple = ()) -> list:
        task_names = ",".join(t if isinstance(t, str) else f"jsonl:{t}" for t in tasks)
        return ["eval", "--model", model if model is not None else self.model(), "--tasks", task_names,
                "--mode", "zero-shot", "--max-new-tokens", "4", "--batch-size", "2",
                "--data-dir", self.data_dir, "--out", out, *extra]  # fmt: skip

    def build(self, name: str) -> Path:
        """A finished `cotspec build --gold --limit 2` output at tmp/name."""
        target = self.tmp / name
        shutil.copytree(self.build_template, target)
        return target

    def store(self, where: Path | None = None) -> Path:
        """A closed sample store with 2 questions x 2 chains (3 correct)."""
        path = (where or self.tmp) / "teacher.db"
        with SampleStore.open(path, writable=True) as opened:
            run_id = opened.register_run(run_config())
            opened.add_questions(examples(2))
            opened.add_many([make_row(f"gsm8k/train/{q}", i, run_id=run_id, correct=(q, i) != (1, 1))
                             for q in range(2) for i in range(2)])  # fmt: skip
        return path


Run = Callable[..., object]


@dataclass(frozen=True)
class Case:
    id: str
    command: Callable[[World, Run], list]
    """Prepares the case's files (it may run earlier commands with `run`) and returns the command."""
    error: tuple[str, ...] | None = None
    """Fragments of the expected one-line error; None: the command must succeed."""
    kept: Callable[[World], list[Path]] = lambda world: []
    """Prior outputs that must come out byte-identical."""
    check: Callable[[World, object], None] | None = None
    """Further checks of a successful command."""
    read_only: bool = False
    """Run with world.media mounted read-only (in a child process)."""


def ok(result) -> None:
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == 0, result.stderr


# --- D3: build never deletes what it did not write ---------------------------------------------------


def build_over(extra_files: dict[str, str]) -> Callable[[World, Run], list]:
    def command(world: World, run: Run) -> list:
        out = world.build("data")
        for name, text in extra_files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
        return ["build", "--gold", "--limit", "2", "--data-dir", world.data_dir, "--out", out]

    return command


# What `cotspec train --data D --out D` adds to D.
TRAIN_RUN = {"config.yaml": "student: {}\n", "model/model.safetensors": "weights", "train_summary.json": "{}\n",
             "checkpoint-2/trainer_state.json": "{}\n"}  # fmt: skip
EVAL_RUN = {"run.json": '{"model": "m"}\n', "summary.json": "{}\n", "predictions/gsm8k.jsonl": '{"id": "gsm8k/test/0"}\n'}


# --- D4: --out that is a file, under a file, or read-only ----------------------------------------------


def a_file(world: World) -> Path:
    path = world.tmp / "notes.txt"
    path.write_text("mine\n")
    return path


def eval_out(out: Callable[[World], Path]) -> Callable[[World, Run], list]:
    return lambda world, run: world.eval_args(world.task_file("q.jsonl"), out=out(world))


def build_out(out: Callable[[World], Path]) -> Callable[[World, Run], list]:
    return lambda world, run: ["build", "--gold", "--limit", "2", "--data-dir", world.data_dir, "--out", out(world)]


def export_out(out: Callable[[World], Path], store_on_media: bool = False) -> Callable[[World, Run], list]:
    def command(world: World, run: Run) -> list:
        store = world.store(world.media if store_on_media else None)
        return ["store", "export", store, "--file", out(world)]

    return command


# --- D5: two jsonl tasks whose files share a name -----------------------------------------------------


def two_files_named_alike(world: World, run: Run) -> list:
    first = world.task_file("a/q.jsonl", QUESTIONS[:1])
    second = world.task_file("b/q.jsonl", QUESTIONS[1:])
    args = world.eval_args(first, second, out=world.tmp / "run")
    ok(run(*args))
    return args  # the re-run must find both tasks' predictions and redo nothing


def check_both_tasks_kept(world: World, result) -> None:
    files = sorted((world.tmp / "run" / "predictions" / "jsonl").glob("*.jsonl"))
    assert len(files) == 2, files
    ids = [json.loads(line)["id"] for path in files for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted([f"jsonl:{world.tmp / 'a/q.jsonl'}/test/0", f"jsonl:{world.tmp / 'b/q.jsonl'}/test/0"])


# --- D6: a typo in --model must not claim the run directory -------------------------------------------


def model_typo_then_corrected(world: World, run: Run) -> list:
    task = world.task_file("q.jsonl")
    typo = run(*world.eval_args(task, out=world.tmp / "run", model=world.tmp / "modle"))
    assert_one_line_error(typo, "modle")
    return world.eval_args(task, out=world.tmp / "run")


# --- D7: resuming never mixes in results of another task file or another model -------------------------


def edited_task_file(world: World, run: Run) -> list:
    task = world.task_file("q.jsonl")
    ok(run(*world.eval_args(task, out=world.tmp / "run", extra=("--limit", "1"))))
    world.task_file("q.jsonl", [{"question": "What is 7 + 7?", "answer": 14}, QUESTIONS[1]])
    return world.eval_args(task, out=world.tmp / "run")


def model_retrained_in_place(world: World, run: Run) -> list:
    task = world.task_file("q.jsonl")
    ok(run(*world.eval_args(task, out=world.tmp / "run", extra=("--limit", "1"))))
    save_tiny_model(world.model(), seed=1)  # same path, same file names and sizes, other weights
    return world.eval_args(task, out=world.tmp / "run")


# --- D8, D12: bad task files and flags, refused before anything is loaded or written --------------------


def bad_task_file(raw: bytes) -> Callable[[World, Run], list]:
    return lambda world, run: world.eval_args(world.task_file("q.jsonl", raw), out=world.tmp / "run")


def max_new_tokens_zero(world: World, run: Run) -> list:
    # The model does not exist: a check made only after loading it would report that instead.
    args = world.eval_args(world.task_file("q.jsonl"), out=world.tmp / "run", model=world.tmp / "absent")
    return [*args, "--max-new-tokens", "0"]


# --- D9: a store on read-only media -------------------------------------------------------------------


def check_stats_printed(world: World, result) -> None:
    assert "chains" in result.stdout and "teacher-7b" in result.stdout, result.stdout


def check_exported(world: World, result) -> None:
    lines = (world.tmp / "chains.jsonl").read_text().splitlines()
    assert len(lines) == 3


def out_dir(world: World) -> Path:
    return world.tmp / "run"


CASES = [
    Case("D3-build-over-a-train-run", build_over(TRAIN_RUN), ("--out", "cotspec train"),
         kept=lambda w: [w.tmp / "data"]),
    Case("D3-build-over-an-eval-run", build_over(EVAL_RUN), ("--out", "cotspec eval"), kept=lambda w: [w.tmp / "data"]),
    Case("D3-build-over-unknown-files", build_over({"notes.txt": "mine\n"}), ("--out", "notes.txt"),
         kept=lambda w: [w.tmp / "data"]),
    Case("D4-eval-out-is-a-file", eval_out(a_file), ("--out", "notes.txt", "is a file"), kept=lambda w: [w.tmp]),
    Case("D4-eval-out-under-a-file", eval_out(lambda w: a_file(w) / "run"), ("--out", "notes.txt"),
         kept=lambda w: [w.tmp]),
    Case("D4-eval-out-read-only", eval_out(lambda w: w.media / "run"), ("--out", "media", "read-only"),
         kept=lambda w: [w.media], read_only=True),
    Case("D4-build-out-is-a-file", build_out(a_file), ("--out", "notes.txt", "is a file"), kept=lambda w: [w.tmp]),
    Case("D4-build-out-under-a-file", build_out(lambda w: a_file(w) / "data"), ("--out", "notes.txt"),
         kept=lambda w: [w.tmp]),
    Case("D4-build-out-read-only", build_out(lambda w: w.media / "data"), ("--out", "media", "read-only"),
         kept=lambda w: [w.media], read_only=True),
    Case("D4-export-out-is-a-directory", export_out(lambda w: w.tmp), ("--file", "is a directory"),
         kept=lambda w: [w.tmp]),
    Case("D4-export-out-under-a-file", export_out(lambda w: a_file(w) / "chains.jsonl"), ("--file", "notes.txt"),
         kept=lambda w: [w.tmp]),
    Case("D4-export-out-read-only", export_out(lambda w: w.media / "chains.jsonl"), ("--file", "media", "read-only"),
         kept=lambda w: [w.media], read_only=True),
    Case("D5-two-jsonl-files-named-alike", two_files_named_alike, None, kept=lambda w: [w.tmp / "run"],
         check=check_both_tasks_kept),
    Case("D6-model-typo-then-corrected", model_typo_then_corrected, None),
    Case("D7-edited-task-file", edited_task_file, ("q.jsonl", "new --out"), kept=lambda w: [w.tmp / "run"]),
    Case("D7-model-retrained-in-place", model_retrained_in_place, ("--model", "new --out"),
         kept=lambda w: [w.tmp / "run"]),
    Case("D8-nan-answer", bad_task_file(b'{"question": "q", "answer": NaN}\n'), ("q.jsonl:1", "answer"),
         kept=lambda w: [out_dir(w)]),
    Case("D8-infinity-answer", bad_task_file(b'{"question": "q", "answer": 1}\n{"question": "q", "answer": -Infinity}\n'),
         ("q.jsonl:2", "answer"), kept=lambda w: [out_dir(w)]),
    Case("D8-not-utf8", bad_task_file(b'{"question": "q", "answer": 1}\n{"question": "caf\xe9", "answer": 2}\n'),
         ("q.jsonl:2", "UTF-8"), kept=lambda w: [out_dir(w)]),
    Case("D9-stats-on-read-only-media", lambda w, run: ["store", "stats", w.store(w.media)], None, read_only=True,
         kept=lambda w: [w.media], check=check_stats_printed),
    Case("D9-export-from-read-only-media", export_out(lambda w: w.tmp / "chains.jsonl", store_on_media=True), None,
         read_only=True, kept=lambda w: [w.media], check=check_exported),
    Case("D12-empty-task-file", bad_task_file(b"\n"), ("q.jsonl", "no questions"), kept=lambda w: [out_dir(w)]),
    Case("D12-max-new-tokens-0", max_new_tokens_zero, ("--max-new-tokens",), kept=lambda w: [out_dir(w)]),
]  # fmt: skip


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """(tiny model, tiny gold build), made once and copied per case."""
    from cotspec.formats import BuildConfig, build_training_data

    root = tmp_path_factory.mktemp("templates")
    model = save_tiny_model(root / "model")
    build_training_data(BuildConfig(out=root / "build", gold=True, limit=2, data_dir=data_dir))
    return model, root / "build"


def _world(tmp: Path, data_dir: Path, templates: tuple[Path, Path]) -> World:
    return World(tmp, data_dir, *templates)


@pytest.fixture(scope="module")
def read_only_results(tmp_path_factory, data_dir, templates) -> dict[str, tuple[World, object, dict, dict]]:
    """Every read-only case run in one child process (one interpreter start for all of them).

    Returns case id -> (world, result, snapshot of kept paths before, after).
    """
    if not _read_only_mounts_work(tmp_path_factory.mktemp("probe")):
        pytest.skip("needs a private mount namespace (root with CAP_SYS_ADMIN and `unshare`) for read-only media")
    cases = [case for case in CASES if case.read_only]
    worlds = {case.id: _world(tmp_path_factory.mktemp(case.id), data_dir, templates) for case in cases}
    commands = {case.id: [str(a) for a in case.command(worlds[case.id], _refuse_nested_run)] for case in cases}
    before = {case.id: snapshot(*case.kept(worlds[case.id])) for case in cases}
    media = sorted({str(world.media) for world in worlds.values()})
    results = _run_on_read_only_media(media, commands)
    return {
        case.id: (worlds[case.id], results[case.id], before[case.id], snapshot(*case.kept(worlds[case.id])))
        for case in cases
    }


def _refuse_nested_run(*args):
    raise AssertionError("read-only cases prepare files only; they cannot run commands first")


def _read_only_mounts_work(probe: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && ! touch "$0/x" 2>/dev/null'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, probe],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0 and not (probe / "x").exists()


_DRIVER = """
import contextlib, io, json, sys, traceback
from cotspec.cli.main import main
results = {}
for case_id, args in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[case_id] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
print(json.dumps(results))
"""


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str


def _run_on_read_only_media(media: list[str], commands: dict[str, list[str]]) -> dict[str, ChildResult]:
    """Run `commands` through the CLI in one child whose mount namespace has every `media` dir read-only."""
    mounts = " && ".join(f'mount --bind "{m}" "{m}" && mount -o remount,bind,ro "{m}"' for m in media)
    child = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh",
         sys.executable, "-c", _DRIVER, json.dumps(commands)],
        capture_output=True, text=True, env={**os.environ, "COTSPEC_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    return {case_id: ChildResult(**fields) for case_id, fields in json.loads(child.stdout.splitlines()[-1]).items()}


# --- the table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault(case: Case, request, tmp_path, data_dir, templates, run_cli, monkeypatch):
    monkeypatch.setenv("COTSPEC_OFFLINE", "1")
    if case.read_only:
        world, result, before, after = request.getfixturevalue("read_only_results")[case.id]
    else:
        world = _world(tmp_path, data_dir, templates)
        args = case.command(world, run_cli)
        before = snapshot(*case.kept(world))
        result = run_cli(*args)
        after = snapshot(*case.kept(world))
    if case.error is None:
        assert "Traceback" not in result.stderr, result.stderr
        ok(result)
        if case.check is not None:
            case.check(world, result)
    else:
        assert_one_line_error(result, *case.error)
    assert after == before
