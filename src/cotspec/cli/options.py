"""Typer flags generated from a config dataclass: one flag per field, its help the field's docstring, its
default the field's default, so no setting is declared twice.

    @config_command(app, "eval", EvalConfig, aliases={"max_new_tokens": ["--max-tokens"]})
    def eval_command(config: EvalConfig, show_subtasks: Annotated[bool, typer.Option(...)] = False) -> None:
        ...

The command's own parameters after `config` (`show_subtasks`) are ordinary typer parameters. For each
field ``some_name`` the flag is ``--some-name``:

- a bool is a switch pair, ``--some-name/--no-some-name``;
- a tuple takes comma-separated values, and the flag may repeat (``--tasks gsm8k,svamp`` or
  ``--tasks gsm8k --tasks svamp``);
- a Literal offers its choices, an Enum its values; a field without a default is a required flag;
- `aliases` adds hidden flags (old names) that set the same field.

The values go through `cotspec.config.from_tree`, as a YAML file's would; a `ConfigError` (from the
config's checks or from the command's run) is shown with the field spelled as its flag.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Sequence, Union, get_args, get_origin, get_type_hints

import typer

from ..config import default_of, from_tree, render
from ..errors import ConfigError, CotspecError
from ..fieldhelp import field_docs

_ALIAS = "alias__"


def flag_name(field_name: str) -> str:
    """``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + field_name.replace("_", "-")


def field_help(cls: type, name: str) -> str:
    """The docstring of field `name`, other fields named in backticks shown as their flags."""
    names = {f.name for f in fields(cls)}
    doc = field_docs(cls).get(name, "")
    return re.sub(r"`([a-z_][a-z0-9_]*)`", lambda m: flag_name(m.group(1)) if m.group(1) in names else m.group(0), doc)


def flag_renderer(cls: type) -> Callable[[str], str]:
    """Field path -> how the command line spells it: the flag for a field of `cls`, else the path."""
    names = {f.name for f in fields(cls)}
    return lambda key: flag_name(key) if key in names else key


def as_flags(cls: type, err: ConfigError) -> CotspecError:
    """`err` as the command line says it: ``--max-new-tokens: must be >= 1, got 0``."""
    return render(err, flag_renderer(cls))


def config_options(cls: type, aliases: Mapping[str, Sequence[str]] | None = None) -> list[inspect.Parameter]:
    """Keyword-only typer parameters for the fields of `cls` (required ones first), then the hidden aliases."""
    aliases = aliases or {}
    hints = get_type_hints(cls)
    params: list[inspect.Parameter] = []
    hidden: list[inspect.Parameter] = []
    for f in fields(cls):
        if not f.init:
            continue
        names = list(aliases.get(f.name, ()))
        annotation, default = _option(cls, f.name, hints[f.name], default_of(f), required_via_alias=bool(names))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default))
        for i, alias in enumerate(names):
            alias_type = _alias_type(hints[f.name])
            hidden.append(
                inspect.Parameter(
                    f"{_ALIAS}{f.name}__{i}",
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[alias_type, typer.Option(alias, hidden=True)],
                    default=None,
                )
            )
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)  # required flags first, stable
    return params + hidden


def _option(cls: type, name: str, hint: Any, default: Any, *, required_via_alias: bool) -> tuple[Any, Any]:
    """(Annotated type, default) of the flag for one field."""
    flag = flag_name(name)
    help_text = field_help(cls, name)
    required = default is MISSING
    if required and required_via_alias:
        help_text += " (required)"
    kwargs: dict[str, Any] = {"help": help_text}
    py_default: Any = inspect.Parameter.empty if required and not required_via_alias else default
    if required_via_alias:
        py_default = None if required else default
    inner, optional = _unwrap_optional(hint)
    if inner is bool:
        return Annotated[bool, typer.Option(f"{flag}/--no-{flag[2:]}", metavar=" ", **kwargs)], py_default
    if get_origin(inner) is tuple:
        item = get_args(inner)[0]
        kwargs["metavar"] = f"{_metavar(item)},..."
        kwargs["show_default"] = False
        if default not in (None, MISSING, ()):
            kwargs["help"] += f" \\[default: {','.join(str(v) for v in default)}]"
        return Annotated[Optional[list[str]], typer.Option(flag, **kwargs)], (py_default if required else None)
    if get_origin(inner) is Literal:
        kwargs["metavar"] = "[" + "|".join(str(a) for a in get_args(inner)) + "]"
        typ: Any = str
    else:
        typ = inner
    if optional or required_via_alias:
        typ = Optional[typ]
    return Annotated[typ, typer.Option(flag, **kwargs)], py_default


def _alias_type(hint: Any) -> Any:
    inner, _ = _unwrap_optional(hint)
    if get_origin(inner) is tuple:
        return Optional[list[str]]
    if get_origin(inner) is Literal:
        return Optional[str]
    return Optional[inner]


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0], True
    return hint, False


def _metavar(item: Any) -> str:
    return {int: "INTEGER", float: "FLOAT", Path: "PATH"}.get(item, "TEXT")


def build_config(cls: type, values: Mapping[str, Any]) -> Any:
    """`cls` from the generated parameters' values (aliases folded in); ConfigError names the field."""
    tree: dict[str, Any] = {}
    given_aliases: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(_ALIAS):
            if value is not None:
                given_aliases[key[len(_ALIAS) :].rsplit("__", 1)[0]] = value
        elif value is not None or not _is_tuple_field(cls, key):
            tree[key] = value
    for name, value in given_aliases.items():
        if tree.get(name) is None or tree.get(name) == _default(cls, name):
            tree[name] = value
    # An unset optional required-via-alias flag arrives as None: leave it out so the check says "required".
    required = {f.name for f in fields(cls) if default_of(f) is MISSING}
    tree = {k: v for k, v in tree.items() if not (k in required and v is None)}
    return from_tree(cls, tree)


def _is_tuple_field(cls: type, name: str) -> bool:
    inner, _ = _unwrap_optional(get_type_hints(cls)[name])
    return get_origin(inner) is tuple


def _default(cls: type, name: str) -> Any:
    return next(default_of(f) for f in fields(cls) if f.name == name)


def config_command(
    parent: typer.Typer,
    name: str,
    cls: type,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    **command_kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(config, **own)`` as command `name` of `parent`, with one flag per field of `cls`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]
        own_names = {p.name for p in own}
        params = config_options(cls, aliases) + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            extra = {k: values.pop(k) for k in list(values) if k in own_names}
            try:
                config = build_config(cls, values)
                return func(config, **extra)
            except ConfigError as err:
                raise as_flags(cls, err) from None

        del command.__wrapped__  # typer must read the generated signature, not func's
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        parent.command(name, **command_kwargs)(command)
        return func

    return decorate


__all__ = ["as_flags", "build_config", "config_command", "config_options", "field_help", "flag_name", "flag_renderer"]
