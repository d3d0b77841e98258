"""One config system: a dataclass per stage drives YAML files, dotted overrides and command-line flags.

    config = load(DistillConfig, Path("configs/distill-gold.yaml"), ["train.lr=1e-4"])
    text = to_yaml(config)                      # commented YAML that `load` reads back to an equal config
    config = from_tree(EvalConfig, {"model": "m", "tasks": "gsm8k,svamp", "out": "runs/e"})

A config is a frozen dataclass whose fields carry a docstring (the string literal right below the field,
read by `cotspec.fieldhelp.field_docs`); a field whose type is a dataclass (or an optional one) is a
section. Everything here is generic over the root dataclass: the same code reads `cotspec train`'s YAML,
applies its ``key=value`` overrides and turns the typer flags of `cotspec sample|build|eval` into
configs (`cotspec.cli.options` generates those flags from the same fields). Values are coerced to the
field's type: ``"1e-4"`` to a float, ``"a,b"`` to a tuple, ``"{a: 1}"`` (or a YAML mapping) to a dict,
``"yes"`` to True, ``"null"`` to None.

Errors. A config's own checks (``__post_init__``) raise `cotspec.errors.ConfigError(field, message)`
with the field's name, never a front end's spelling of it; a message that names another field writes
it in backticks (``it needs `store```), relative to the same section. `render` turns such an error into
the one line a front end shows, naming every field in that front end's words: `load` as ``file:line:
key`` (or the dotted key of an override), the CLI as the flag.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import textwrap
import types
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError, CotspecError
from .fieldhelp import field_docs

# --- fields --------------------------------------------------------------------------------------------


def section_type(hint: Any) -> type | None:
    """The dataclass a field of type `hint` holds (``Sec`` or ``Sec | None``), else None (a plain value)."""
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


def is_required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]


def default_of(f: Field) -> Any:
    """The field's default value (MISSING for a required field)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


def keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of `cls`, sections expanded (optional sections too)."""
    hints = get_type_hints(cls)
    out: list[str] = []
    for f in fields(cls):
        section = section_type(hints[f.name])
        if section is None:
            out.append(prefix + f.name)
        else:
            out.extend(keys(section, f"{prefix}{f.name}."))
    return out


# --- building and coercion -------------------------------------------------------------------------------


def from_tree(cls: type, tree: Mapping[str, Any], *, prefix: str = "", where: Mapping[str, str] | None = None) -> Any:
    """`cls` built from a nested mapping of (possibly text) values, each coerced to its field's type.

    Raises `ConfigError` naming the dotted field (bad value, missing required field, a config's own
    check) and `CotspecError` for an unknown key (with a suggestion, and its place when `where` maps the
    key to one, e.g. ``cfg.yaml:3``)."""
    where = where or {}
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if name not in names:
            at = f"{where[key]}: " if key in where else ""
            raise CotspecError(f"{at}unknown key '{key}'{_suggest(str(name), names, prefix)}")
        section = section_type(hints[name])
        if section is not None:
            if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
                if section is hints[name]:
                    continue  # a required-type section left at its default
                kwargs[name] = None
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(key, f"is a section; give its keys ({key}.<key>=...)")
            kwargs[name] = from_tree(section, value, prefix=key + ".", where=where)
        else:
            kwargs[name] = coerce(value, hints[name], key)
    for f in fields(cls):
        if f.name not in kwargs and is_required(f) and f.init:
            raise ConfigError(prefix + f.name, "is required and has no default; set it")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise (err.within(prefix[:-1]) if prefix else err) from None


def _suggest(name: str, names: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; known keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~", ""}


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` as the type `hint` says (text from a flag or an override included), or a ConfigError on `key`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(value, inner, key)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(key, f"must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin is tuple:
        items = split_list(value)
        return tuple(coerce(v, args[0], key) for v in items)
    if origin is dict:
        return _coerce_mapping(value, args, key)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in hint)
            raise ConfigError(key, f"must be one of {choices}; got {value!r}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = _as_float(value)
        if number is not None:
            # inf and nan parse as floats but no setting means them: an infinite learning rate trains NaNs.
            if not math.isfinite(number):
                raise ConfigError(key, f"must be a finite number, got {value!r}")
            return number
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value).expanduser()
    else:  # pragma: no cover - a field type this module does not know is a bug, not a user error
        raise TypeError(f"{key}: unsupported config field type {hint!r}")
    raise ConfigError(key, f"must be {_type_name(hint)}, got {value!r}")


def _coerce_mapping(value: Any, args: tuple, key: str) -> dict[Any, Any]:
    """A ``dict[K, V]`` field: a YAML mapping (or its flow text, ``{a: 1, b: 2}``), keys and values
    coerced; a bad value names its entry (``key.name``)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            pass
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping ({{name: value, ...}}), got {value!r}")
    key_type, value_type = args if args else (str, str)
    return {coerce(k, key_type, key): coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}


def split_list(value: Any) -> list[Any]:
    """A tuple field's items: a YAML list, or comma-separated text (several texts, e.g. repeated flags, too)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return [value]
    items: list[Any] = []
    for item in value:
        if isinstance(item, str):
            items.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            items.append(item)
    return items


def _as_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        hint, str(hint)
    )


# --- errors ----------------------------------------------------------------------------------------------


def render(err: ConfigError, name: Callable[[str], str], head: Callable[[str], str] | None = None) -> CotspecError:
    """`err` as one line in a front end's words: ``<head(field)>: <message>``, every backticked field in the
    message replaced by ``name(...)`` (resolved in the erring field's section)."""
    section = err.field.rpartition(".")[0]

    def reference(match: re.Match) -> str:
        ref = match.group(1)
        return name(f"{section}.{ref}" if section else ref)

    message = re.sub(r"`([a-z_][a-z0-9_.]*)`", reference, err.message)
    return CotspecError(f"{(head or name)(err.field)}: {message}")


# --- loading: defaults, then a YAML file, then flags, then key=value overrides -----------------------------


def load(
    cls: type,
    path: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, tuple[Any, str]] | None = None,
    *,
    ignore_sections: Sequence[str] = (),
) -> Any:
    """A `cls` config: its defaults, then the YAML file at `path`, then command-line `flags` (dotted key ->
    (value or None, flag name), as `cotspec train` passes its --data and --out), then the ``key=value``
    overrides, each later one winning. Any error is one `CotspecError` line that names the key where it
    was set: ``file:line: key`` for the file, the flag for a flag, the key for an override.

    `ignore_sections`: top-level sections of the file that another reader of the same file owns (`cotspec
    train` reading a `cotspec run` config skips ``select``): dropped unread, never an unknown key."""
    tree: dict[str, Any] = {}
    where: dict[str, str] = {}  # dotted key -> "file:line", for keys (and sections) set in the file
    flag_of: dict[str, str] = {}  # dotted key -> the flag that set it
    if path is not None:
        tree, lines = _read_yaml(Path(path))
        for section in ignore_sections:
            tree.pop(section, None)
        where = {key: f"{path}:{line}" for key, line in lines.items()}
    for key, (value, flag) in (flags or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
            _forget(where, key)
            flag_of[key] = flag
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CotspecError(f"override {item!r} is not key=value (e.g. train.lr=1e-4)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _set_dotted(tree, key, value)
        _forget(where, key)
        flag_of.pop(key, None)

    def name(key: str) -> str:
        return flag_of.get(key, key)

    def head(key: str) -> str:
        return f"{where[key]}: {key}" if key in where else name(key)

    try:
        return from_tree(cls, tree, where=where)
    except ConfigError as err:
        raise render(err, name, head) from None


def _forget(where: dict[str, str], key: str) -> None:
    """`key` no longer comes from the file (nor do keys under it); its sections still do."""
    for known in [k for k in where if k == key or k.startswith(key + ".")]:
        del where[known]


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CotspecError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise CotspecError(f"{path}: is a directory; give a YAML config file") from None
    try:
        tree = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise CotspecError(f"{path}{at}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if tree is None:
        return {}, {}
    if not isinstance(tree, dict):
        raise CotspecError(f"{path}: the config must be a mapping of keys and sections, got {type(tree).__name__}")
    return tree, _key_lines(node)


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line of that key in the YAML text (for error messages)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


# --- writing ---------------------------------------------------------------------------------------------


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> plain value (str paths, lists for tuples, None for an unset section)."""
    flat: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            flat.update(flatten(value, f"{prefix}{f.name}."))
        else:
            flat[prefix + f.name] = plain(value)
    return flat


def plain(value: Any) -> Any:
    """`value` as YAML/JSON writes it: paths as text, tuples as lists, mappings as dicts, enums as their value."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


def to_yaml(config: Any, *, comments: bool = True) -> str:
    """The config as YAML that `load` reads back to an equal config; field docs as comments."""
    out: list[str] = []

    def emit(obj: Any, indent: str) -> None:
        docs = field_docs(type(obj))
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value) or (value is None and section_type(get_type_hints(type(obj))[f.name])):
                out.append("")
                section_doc = (type(value).__doc__ or "") if value is not None else docs.get(f.name, "")
                if comments and section_doc.strip():
                    out.append(f"{indent}# {section_doc.strip().splitlines()[0]}")
                if value is None:
                    out.append(f"{indent}{f.name}: null")
                    continue
                out.append(f"{indent}{f.name}:")
                emit(value, indent + "  ")
                continue
            doc = docs.get(f.name)
            if comments and doc:
                width = 100 - len(indent) - 2
                out.extend(f"{indent}# {line}" for line in textwrap.wrap(doc, width))
            out.append(f"{indent}{f.name}: {yaml_scalar(plain(value))}")

    emit(config, "")
    return "\n".join(out).lstrip("\n") + "\n"


def yaml_scalar(value: Any) -> str:
    """`value` as one line of YAML flow text."""
    # Dumped as a one-item flow list and unwrapped: plain safe_dump of a scalar appends "...".
    return yaml.safe_dump([value], default_flow_style=True, width=10_000, sort_keys=False).strip()[1:-1]


def help_lines(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default as YAML or ``required``, doc) for every key of `cls`, sections expanded."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    rows: list[tuple[str, str, str]] = []
    for f in fields(cls):
        section = section_type(hints[f.name])
        if section is not None:
            rows.extend(help_lines(section, f"{prefix}{f.name}."))
            continue
        default = default_of(f)
        shown = "required" if default is MISSING else yaml_scalar(plain(default))
        rows.append((prefix + f.name, shown, docs.get(f.name, "")))
    return rows


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Flattened keys whose values differ, except those `ignore` accepts."""
    return [k for k in sorted(set(old) | set(new)) if not ignore(k) and old.get(k) != new.get(k)]
