"""Where benchmark files live, how a missing one is fetched, and how JSON Lines are read with good errors.

Every file is read in its original public format (see ``SOURCES.md`` in the data folder). A file that is
missing is downloaded once from the exact commit it was copied from, unless downloads are switched off
(``COTSPEC_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``); if it is still missing the error names the file, the data
folder and the URL to fetch it from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import platformdirs

from ..errors import ConfigError, CotspecError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "COTSPEC_DATA_DIR"
OFFLINE_ENVS = ("COTSPEC_OFFLINE", "HF_HUB_OFFLINE")
DOWNLOAD_TIMEOUT_S = 15.0
"""Connect/read timeout of one download, in seconds: a blocked network fails fast instead of hanging."""


@dataclass(frozen=True)
class Source:
    """A folder (or file) of the data dir and where it was copied from, byte for byte."""

    repo: str
    commit: str
    path: str
    """Path in the repository that corresponds to the local prefix."""


# Local prefix -> public source, pinned to the commit SOURCES.md lists. A local path maps to the longest
# prefix that matches it; what follows the prefix is appended to `Source.path`.
SOURCES: dict[str, Source] = {
    "gsm8k/": Source(
        "openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c", "grade_school_math/data/"
    ),
    "svamp/SVAMP.json": Source("arkilpatel/SVAMP", "689d7ccac74b9983a2ac7cc3b264f441b99e7c53", "SVAMP.json"),
    "asdiv/": Source("chaochun/nlu-asdiv-dataset", "883f90a9a65bf00304ba8f37423910fe743abc47", "dataset/"),
    "multiarith/MultiArith.json": Source(
        "kojima-takeshi188/zero_shot_cot", "5ef330fcdeec0cd26aee27943504f91f8ec1c33c", "dataset/MultiArith/MultiArith.json"
    ),
    "bbh/": Source("suzgunmirac/BIG-Bench-Hard", "9ee07bd481feebf959a6b59d61ea57bdcf30964d", ""),
    "gsm8k_prompts/": Source(
        "FranxYao/FlanT5-CoT-Specialization", "a8ffd51afa4f88b9a8fe160c093fb891af5a1cc7", "lib_prompt/"
    ),
}


def resolve_data_dir(cli_value: str | Path | None) -> Path:
    """`data_dir` (the setting), else `$COTSPEC_DATA_DIR`, else `<user cache dir>/cotspec/data`. Need not exist yet."""
    if cli_value is not None and str(cli_value) != "":
        return Path(cli_value).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("cotspec")) / "data"


def source_url(relpath: str) -> str | None:
    """The raw.githubusercontent.com URL of a data file at its pinned commit, or None if it has no source."""
    matches = [p for p in SOURCES if relpath == p or (p.endswith("/") and relpath.startswith(p))]
    if not matches:
        return None
    prefix = max(matches, key=len)
    src = SOURCES[prefix]
    return f"https://raw.githubusercontent.com/{src.repo}/{src.commit}/{src.path}{relpath[len(prefix):]}"


def downloads_disabled() -> str | None:
    """The environment variable that switches downloads off, or None when they are allowed."""
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no"):
            return name
    return None


def require_file(data_dir: str | Path, relpath: str, *, client: httpx.Client | None = None) -> Path:
    """`data_dir/relpath`, downloading it from its public source first if it is missing.

    `client` is for tests (a mock transport); by default a short-lived client with a short timeout.
    Raises CotspecError naming the file, the data dir and the URL when the file cannot be had.
    """
    data_dir = Path(data_dir)
    target = data_dir / relpath
    if target.is_file():
        return target
    url = source_url(relpath)
    disabled = downloads_disabled()
    if url is None:
        why = "it has no known public source"
    elif disabled:
        why = f"downloads are off because {disabled} is set"
    else:
        try:
            _download(url, target, client)
            return target
        except (httpx.HTTPError, OSError) as exc:
            why = f"download failed: {_describe(exc)}"
    where = f"; get it from {url}" if url else ""
    raise ConfigError(
        "data_dir",
        f"missing data file {relpath} under data dir {data_dir} ({why}){where} "
        f"(or point it or ${DATA_DIR_ENV} at a folder that has it)",
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _download(url: str, target: Path, client: httpx.Client | None) -> None:
    """Stream `url` into a temp file next to `target`, then rename: a failure leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s -> %s", url, target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    http = client or httpx.Client(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True)
    try:
        with os.fdopen(fd, "wb") as sink, http.stream("GET", url) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                sink.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if client is None:
            http.close()


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, record)` for each non-blank line; line numbers are 1-based, as editors show.

    A line that is not UTF-8 text or not a JSON object raises CotspecError naming `path:line`.
    """
    path = Path(path)
    try:
        handle = path.open("rb")  # bytes, decoded per line: an encoding error can then name its line
    except OSError as exc:
        raise CotspecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = raw.removeprefix(_BOM)  # a BOM (Windows editors) is not part of line 1's JSON
            line = _decode(raw, f"{path}:{line_number}")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CotspecError(f"{path}:{line_number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise CotspecError(f"{path}:{line_number}: expected a JSON object, got {_json_name(record)}")
            yield line_number, record


def read_json(path: str | Path) -> Any:
    """A whole-file JSON document; a syntax error raises CotspecError naming `path:line:column`."""
    path = Path(path)
    try:
        raw = path.read_bytes().removeprefix(_BOM)
    except OSError as exc:
        raise CotspecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CotspecError(f"{path}:{line}:{column}: {_not_utf8(raw[exc.start])}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CotspecError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from exc


_BOM = b"\xef\xbb\xbf"


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        field = _field_holding_bad_bytes(raw)
        if field is not None:
            raise field_error(where, field, f"is {_not_utf8(raw[exc.start])}") from None
        raise CotspecError(f"{where}: {_not_utf8(raw[exc.start], f' at byte {exc.start + 1} of the line')}") from None


def _field_holding_bad_bytes(raw: bytes) -> str | None:
    """The top-level field whose string holds the undecodable bytes, when the line is otherwise JSON."""
    try:
        record = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    # surrogateescape turns each undecodable byte into a lone surrogate, which valid text never holds.
    return next((str(key) for key, value in record.items() if isinstance(value, str) and _has_surrogate(value)), None)


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _not_utf8(byte: int, where: str = "") -> str:
    return f"not UTF-8 text (byte 0x{byte:02x}{where}); save the file as UTF-8"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (model weights do not fit memory twice)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_split(task: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise CotspecError(f"split {split!r} does not exist for task {task}; it has {', '.join(splits)}")


def field_error(where: str, field: str, problem: str) -> CotspecError:
    """The error for a missing or ill-typed field; `where` is `path:line` or `path[index]`."""
    return CotspecError(f"{where}: field {field!r} {problem}")


def get_field(record: dict[str, Any], field: str, types: type | tuple[type, ...], where: str) -> Any:
    """`record[field]`, checked to be one of `types` (a JSON true/false is never accepted as a number)."""
    if field not in record:
        raise field_error(where, field, "is missing")
    value = record[field]
    wanted = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
        labels = [_JSON_NAMES.get(t, t.__name__) for t in wanted if not (t is int and float in wanted)]
        expected = labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"
        raise field_error(where, field, f"must be {expected}, got {_json_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        # Python's json reads NaN and Infinity, which JSON does not have; no answer or count is either.
        raise field_error(where, field, f"must be a finite number, got {json.dumps(value)}")
    return value


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object", type(None): "null"}


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)
