"""The one config system: a dataclass drives YAML, dotted overrides and generated typer flags alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from cotspec.cli.options import config_command, flag_name
from cotspec.config import flatten, from_tree, help_lines, load, render, to_yaml
from cotspec.errors import ConfigError, CotspecError
from cotspec.fieldhelp import field_docs


@dataclass(frozen=True, kw_only=True)
class Base:
    name: str
    """What to call it."""
    steps: int = 3
    """How many steps; must be >= 1."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps", f"must be >= 1, got {self.steps}; or set `fast`")


@dataclass(frozen=True, kw_only=True)
class Toy(Base):
    fast: bool = False
    """Go fast."""
    tags: tuple[str, ...] = ("a", "b")
    """Labels, comma-separated."""
    kind: Literal["x", "y"] = "x"
    """Which kind."""
    out: Path | None = None
    """Where it goes."""


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    """Learning rate."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Root:
    out: Path | None = None
    """Run directory."""
    train: Inner = field(default_factory=Inner)
    toy: Toy | None = None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_field_docs_walk_base_classes():
    assert field_docs(Toy)["name"] == "What to call it." and field_docs(Toy)["fast"] == "Go fast."


def test_yaml_round_trip_and_override_coercion(tmp_path):
    config = load(Root, write(tmp_path, "toy:\n  name: t\n  tags: [p, q]\n"), ["train.lr=1e-3", "toy.fast=yes", "toy.tags=r,s", "out=o"])
    assert config == Root(out=Path("o"), train=Inner(lr=1e-3), toy=Toy(name="t", fast=True, tags=("r", "s")))
    assert load(Root, write(tmp_path, to_yaml(config))) == config
    assert flatten(config)["toy.tags"] == ["r", "s"]
    assert load(Root) == Root() and "toy: null" in to_yaml(Root())
    assert ("toy.name", "required", "What to call it.") in help_lines(Root)


def test_unknown_key_suggests_and_points_at_the_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.5\n  lrr: 2\n")
    with pytest.raises(CotspecError, match=rf"^{path}:3: unknown key 'train.lrr'; did you mean 'train.lr'\?$"):
        load(Root, path)
    with pytest.raises(CotspecError, match=r"^unknown key 'trian'; did you mean 'train'\?$"):
        load(Root, None, ["trian.lr=1"])


def test_errors_name_the_key_where_it_was_set(tmp_path):
    path = write(tmp_path, "out: o\ntrain:\n  lr: 0\n")
    with pytest.raises(CotspecError, match=rf"^{path}:3: train.lr: must be > 0, got 0.0$"):
        load(Root, path)
    with pytest.raises(CotspecError, match=r"^train.lr: must be > 0, got -1.0$"):
        load(Root, path, ["train.lr=-1"])  # the override is where it was set now
    with pytest.raises(CotspecError, match=r"^--lr: must be > 0"):
        load(Root, None, flags={"train.lr": (0, "--lr")})
    with pytest.raises(CotspecError, match=r"^toy.steps: must be >= 1, got 0; or set toy.fast$"):
        load(Root, None, ["toy.name=n", "toy.steps=0"])
    with pytest.raises(CotspecError, match=r"^toy.name: is required"):
        load(Root, None, ["toy.steps=2"])


def test_from_tree_raises_config_errors_by_field():
    with pytest.raises(ConfigError) as err:
        from_tree(Toy, {"name": "n", "kind": "z"})
    assert err.value.field == "kind" and "must be one of x, y" in err.value.message
    rendered = render(ConfigError("steps", "bad; see `fast`"), flag_name)
    assert str(rendered) == "--steps: bad; see --fast"



@dataclass(frozen=True)
class Sized:
    sizes: dict[str, int] | None = None
    """Per name, a size."""

    def __post_init__(self) -> None:
        for name, size in (self.sizes or {}).items():
            if size < 1:
                raise ConfigError(f"sizes.{name}", f"must be >= 1, got {size}")


@dataclass(frozen=True)
class SizedRoot:
    run: Sized = field(default_factory=Sized)


def test_dict_fields_load_merge_round_trip_and_name_the_entry_at_fault(tmp_path):
    path = write(tmp_path, "run:\n  sizes:\n    b: 2\n    a: '3'\n")
    config = load(SizedRoot, path)
    assert config.run.sizes == {"b": 2, "a": 3} and list(config.run.sizes) == ["b", "a"]  # coerced, order kept
    text = to_yaml(config)
    assert "sizes: {b: 2, a: 3}" in text and load(SizedRoot, write(tmp_path, text)) == config
    assert flatten(config) == {"run.sizes": {"b": 2, "a": 3}}
    # A dotted override sets one entry (the file's others stay); a flow mapping replaces the whole.
    assert load(SizedRoot, path, ["run.sizes.c=4"]).run.sizes == {"b": 2, "a": 3, "c": 4}
    assert load(SizedRoot, path, ["run.sizes={d: 1}"]).run.sizes == {"d": 1}
    assert load(SizedRoot, None, ["run.sizes=null"]).run.sizes is None
    assert ("run.sizes", "null", "Per name, a size.") in help_lines(SizedRoot)
    with pytest.raises(CotspecError, match=rf"^{path}:4: run.sizes.a: must be >= 1, got 0$"):
        load(SizedRoot, write(tmp_path, "run:\n  sizes:\n    b: 2\n    a: 0\n"))
    with pytest.raises(CotspecError, match=r"^run.sizes.b: must be an integer, got 'x'$"):
        load(SizedRoot, None, ["run.sizes={b: x}"])
    with pytest.raises(CotspecError, match=r"^run.sizes: must be a mapping \(\{name: value, ...\}\), got \[1, 2\]$"):
        load(SizedRoot, None, ["run.sizes=[1, 2]"])


@pytest.fixture
def toy_cli():
    app = typer.Typer()
    seen: list[Toy] = []

    @config_command(app, "toy", Toy, aliases={"steps": ["--n-steps"], "tags": ["--tag"]})
    def toy(config: Toy, loud: bool = typer.Option(False, "--loud")) -> None:
        seen.append(config)
        if loud:
            raise ConfigError("tags", "too loud")

    @app.callback()
    def root() -> None:  # a group, so the command is called by name
        pass

    def run(*args: str):
        result = CliRunner().invoke(app, ["toy", *args])
        return result, seen

    return run


def test_flags_come_from_the_fields(toy_cli):
    result, seen = toy_cli("--name", "n", "--fast", "--tags", "p,q", "--tags", "r", "--kind", "y", "--out", "o")
    assert result.exit_code == 0, result.output
    assert seen[-1] == Toy(name="n", fast=True, tags=("p", "q", "r"), kind="y", out=Path("o"))
    result, seen = toy_cli("--name", "n", "--no-fast")
    assert seen[-1] == Toy(name="n")  # defaults are the dataclass's


def test_help_shows_docs_defaults_and_switches_not_aliases(toy_cli):
    result, _ = toy_cli("--help")
    text = result.output
    for expected in ("--name", "What to call it.", "--fast", "--no-fast", "--tags", "default: a,b", "--steps", "[default: 3]"):
        assert expected in text, expected
    assert "--n-steps" not in text and "--tag " not in text


def test_hidden_aliases_still_work(toy_cli):
    result, seen = toy_cli("--name", "n", "--n-steps", "7", "--tag", "z")
    assert result.exit_code == 0, result.output
    assert seen[-1].steps == 7 and seen[-1].tags == ("z",)


def test_config_errors_are_shown_as_flags(toy_cli):
    result, _ = toy_cli("--name", "n", "--steps", "0")
    assert isinstance(result.exception, CotspecError)
    assert str(result.exception) == "--steps: must be >= 1, got 0; or set --fast"
    result, _ = toy_cli("--name", "n", "--loud")  # raised by the command's run, not its config
    assert str(result.exception) == "--tags: too loud"
    result, _ = toy_cli("--name", "n", "--kind", "z")
    assert str(result.exception).startswith("--kind: must be one of x, y")
