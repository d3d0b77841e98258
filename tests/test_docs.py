"""Every `cotspec` command line shown in README.md and docs/*.md works with the real CLI, so the docs
cannot drift from it.

Lines come from fenced code blocks: a line (with its ``\\`` continuations joined, shell comments dropped)
that starts with ``cotspec``, or that runs ``-m cotspec.cli.main`` / ``-m cotspec`` (``accelerate
launch ...``, ``torchrun ...``, ``python -m ...``). Anything else (``make demo``, ``vllm serve``, JSON,
file layouts) is not ours to check.

- Cheap lines run for real, in-process through `cotspec.cli.main.main`, in a temporary directory holding
  a copy of ``configs/`` and a tiny sample store wherever a line names one: ``--help``, ``store stats``,
  ``store export``, and ``train`` with ``--print-config`` appended (the YAML file, ``--data``/``--out``
  and every ``key=value`` override are resolved and checked; nothing is trained).
- The rest (``eval``, ``sample``, ``build``, ``serve-teacher``: they load models, call servers or read
  GSM8K) are parsed by the real click command without being invoked: an unknown flag, a value of the
  wrong type or a missing required option fails the test.

A failure names the doc file and line, the command line and what the CLI said.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

try:  # typer >= 0.2x runs on its own vendored copy of click, not on the `click` package
    from typer._click import core as click_core
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer on the click package
    from click import core as click_core
    from click import exceptions as click_errors

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_MODULE_ENTRY = ("cotspec.cli.main", "cotspec")
"""``-m`` targets that are the `cotspec` command."""
_COMMAND_MODULES = ("build_cmd", "eval_cmd", "sample_cmd", "store_cmd", "serve_cmd", "train_cmd")

# Subcommands (their path of names) that are too expensive to run here: parsed only.
PARSE_ONLY = {("eval",), ("sample",), ("build",), ("serve-teacher",)}


@dataclass(frozen=True)
class DocCommand:
    """One command line of a doc: where it is, what it says, and its arguments after `cotspec`."""

    doc: Path
    line: int
    """1-based line of the command's first physical line."""
    text: str
    args: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: `{self.text}`"


def cotspec_args(words: list[str]) -> list[str] | None:
    """The arguments after `cotspec` in a shell command's words, or None when it does not run cotspec."""
    if not words:
        return None
    if words[0] == "cotspec":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] in _MODULE_ENTRY:
            return words[i + 2 :]
    return None


def extract_commands(doc: Path, text: str | None = None) -> list[DocCommand]:
    """The cotspec command lines in the fenced code blocks of `doc` (or of `text`, read as that doc)."""
    lines = (doc.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[DocCommand] = []
    in_block = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_block = not in_block
            i += 1
            continue
        if not in_block:
            i += 1
            continue
        start = i
        logical = line
        # A trailing backslash continues the command on the next line (the comment rule is the shell's:
        # a `#` only starts a comment at the start of a word, so `\` before a comment cannot continue).
        while logical.rstrip().endswith("\\") and i + 1 < len(lines) and not _FENCE.match(lines[i + 1]):
            i += 1
            logical = logical.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        try:
            words = shlex.split(logical, comments=True)
        except ValueError:  # not shell (JSON, a file layout): not a command
            continue
        args = cotspec_args(words)
        if args is not None:
            found.append(DocCommand(doc, start + 1, " ".join(logical.split()), tuple(args)))
    return found


def all_commands() -> list[DocCommand]:
    return [command for doc in DOC_FILES for command in extract_commands(doc)]


def cli_app() -> typer.Typer:
    """The typer app with every command registered, wherever the app lives today."""
    try:
        main = importlib.import_module("cotspec.cli.main")
    except ImportError:  # pragma: no cover - the entry point moved
        main = None
    register = getattr(main, "_register_commands", None)
    if register is not None:
        register()
    else:
        for name in _COMMAND_MODULES:
            importlib.import_module(f"cotspec.cli.{name}")
    app = getattr(main, "app", None)
    if app is None:
        app = importlib.import_module("cotspec.cli.app").app
    return app


def _subcommands(cmd: click_core.Command) -> dict[str, click_core.Command] | None:
    """The subcommands of a group by name; None for a leaf command."""
    return getattr(cmd, "commands", None)


def subcommand_path(args: tuple[str, ...]) -> tuple[str, ...]:
    """The names of the (nested) subcommand a line invokes, e.g. ("store", "export")."""
    cmd = typer.main.get_command(cli_app())
    path: list[str] = []
    for word in args:
        subs = _subcommands(cmd)
        if subs is None or word not in subs:
            break
        cmd = subs[word]
        path.append(word)
    return tuple(path)


def parse_only(args: tuple[str, ...]) -> click_core.Context:
    """Parse `args` with the real click commands, down to the leaf subcommand, without invoking it.

    Raises click's UsageError (NoSuchOption, BadParameter, MissingParameter, ...) as the CLI would.
    """
    cmd = typer.main.get_command(cli_app())
    ctx = click_core.Context(cmd, info_name="cotspec", resilient_parsing=False)
    rest = list(args)
    while (subs := _subcommands(cmd)) is not None:
        if not rest or rest[0] not in subs:
            raise click_errors.UsageError(f"no such command {rest[0] if rest else '(none)'!r}", ctx=ctx)
        name, *rest = rest
        cmd = subs[name]
        if _subcommands(cmd) is not None:
            ctx = click_core.Context(cmd, info_name=name, parent=ctx, resilient_parsing=False)
        else:
            return cmd.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return ctx  # pragma: no cover - the root is always a group


def _tiny_store(path: Path) -> None:
    """A sample store with correct and incorrect chains (with top-k), as `cotspec sample` writes."""
    from support.sample_rows import examples, make_row, run_config

    from cotspec.store import SampleStore

    path.parent.mkdir(parents=True, exist_ok=True)
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions(examples(3))
        store.add_many([make_row(f"gsm8k/train/{q}", s, correct=s == 0) for q in range(3) for s in range(2)])


def _prepare(workdir: Path, command: DocCommand) -> tuple[str, ...]:
    """Set up `workdir` for running `command` for real; returns the arguments to run."""
    shutil.copytree(REPO_ROOT / "configs", workdir / "configs")
    path = subcommand_path(command.args)
    if path and path[0] == "store" and "--help" not in command.args:
        positional = [a for a in command.args[len(path) :] if not a.startswith("-")]
        if positional:
            _tiny_store(workdir / positional[0])
    if path == ("train",) and "--help" not in command.args and "--print-config" not in command.args:
        return (*command.args, "--print-config")
    if path == ("run",) and not {"--help", "--print-config", "--dry-run"} & set(command.args):
        return (*command.args, "--dry-run")  # a whole run is hours; its plan checks the same config and flags
    return command.args


DOC_COMMANDS = all_commands()


def test_the_docs_show_every_command():
    """The extraction finds the lines the docs are about (a broken extractor would pass everything)."""
    shown = {subcommand_path(c.args) for c in DOC_COMMANDS}
    for expected in [("eval",), ("sample",), ("serve-teacher",), ("store", "stats"), ("store", "export"), ("build",), ("train",)]:
        assert expected in shown, f"no doc shows `cotspec {' '.join(expected)}`; found {sorted(shown)}"
    assert any(c.doc.name == "training.md" for c in DOC_COMMANDS)


@pytest.mark.parametrize("command", DOC_COMMANDS, ids=lambda c: f"{c.where}:{' '.join(c.args[:2])}")
def test_doc_command_line_works(command: DocCommand, tmp_path, monkeypatch, run_cli):
    path = subcommand_path(command.args)
    assert path, f"{command}: `{command.args[0] if command.args else ''}` is not a cotspec command"
    if path in PARSE_ONLY and "--help" not in command.args:
        try:
            parse_only(command.args)
        except click_errors.ClickException as err:
            pytest.fail(f"{command} does not parse: {err.format_message()}", pytrace=False)
        return
    monkeypatch.chdir(tmp_path)
    args = _prepare(tmp_path, command)
    result = run_cli(*args)
    assert result.exit_code == 0, (
        f"{command} exits with {result.exit_code} (run as `cotspec {' '.join(args)}` in a scratch dir):\n"
        f"{result.stderr or result.stdout}"
    )


# ---- the extractor itself ---------------------------------------------------------------------------

SAMPLE_DOC = """\
Some prose with `cotspec eval --inline` that is not checked.

```bash
make demo   # not ours
cotspec build --store runs/teacher.db \\
    --out runs/data   # trailing comment
# cotspec commented --out
accelerate launch --config_file c.yaml -m cotspec.cli.main \\
    train --config x.yaml --out runs/s
python -m cotspec store stats runs/t.db
```

```json
{"model": "cotspec"}
```
"""


def test_extract_commands_joins_continuations_and_skips_everything_else():
    found = extract_commands(REPO_ROOT / "README.md", SAMPLE_DOC)
    assert [(c.line, c.args) for c in found] == [
        (5, ("build", "--store", "runs/teacher.db", "--out", "runs/data")),
        (8, ("train", "--config", "x.yaml", "--out", "runs/s")),
        (10, ("store", "stats", "runs/t.db")),
    ]
    assert found[0].where == "README.md:5"


def test_parse_only_rejects_unknown_flags_bad_types_and_missing_options():
    with pytest.raises(click_errors.NoSuchOption):
        parse_only(("build", "--out", "runs/data", "--no-such-flag"))
    with pytest.raises(click_errors.BadParameter):
        parse_only(("build", "--out", "runs/data", "--limit", "many"))
    with pytest.raises(click_errors.MissingParameter):
        parse_only(("eval", "--model", "smollm2-135m-instruct"))  # no --out
    parse_only(("eval", "--model", "smollm2-135m-instruct", "--out", "runs/e"))
