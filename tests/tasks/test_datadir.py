"""Data dir resolution, pinned downloads of missing files, and JSON Lines errors that name path:line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from cotspec.errors import CotspecError
from cotspec.tasks import datadir
from cotspec.tasks.datadir import get_field, read_json, read_jsonl, require_file, resolve_data_dir, sha256_file, source_url

GSM8K_TEST_URL = (
    "https://raw.githubusercontent.com/openai/grade-school-math/"
    "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl"
)


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (conftest sets HF_HUB_OFFLINE=1 for the whole suite)."""
    for name in datadir.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)


def test_resolve_data_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COTSPEC_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "from-cli") == tmp_path / "from-cli"
    assert resolve_data_dir(None) == tmp_path / "from-env"
    monkeypatch.delenv("COTSPEC_DATA_DIR")
    default = resolve_data_dir(None)
    assert default.name == "data" and "cotspec" in default.parent.as_posix()


def test_every_shipped_data_file_has_a_pinned_source(data_dir: Path) -> None:
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file())
    files.remove("SOURCES.md")
    assert len(files) == 72  # SOURCES.md: "72 data files"
    urls = {f: source_url(f) for f in files}
    assert all(url is not None for url in urls.values())
    assert urls["gsm8k/test.jsonl"] == GSM8K_TEST_URL
    assert urls["bbh/cot-prompts/snarks.txt"] == (
        "https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/"
        "9ee07bd481feebf959a6b59d61ea57bdcf30964d/cot-prompts/snarks.txt"
    )
    assert urls["asdiv/nfolds/asdiv-a/fold3.txt"].endswith("/883f90a9a65bf00304ba8f37423910fe743abc47/dataset/nfolds/asdiv-a/fold3.txt")
    assert urls["gsm8k_prompts/validation_index.npy"].endswith("/lib_prompt/validation_index.npy")
    assert source_url("not/a/known/file.txt") is None


def test_require_file_returns_existing_file(data_dir: Path) -> None:
    assert require_file(data_dir, "svamp/SVAMP.json") == data_dir / "svamp" / "SVAMP.json"


@pytest.mark.parametrize("switch", ["COTSPEC_OFFLINE", "HF_HUB_OFFLINE"])
def test_missing_file_offline_names_file_dir_and_url(monkeypatch, tmp_path: Path, switch: str) -> None:
    monkeypatch.setenv(switch, "1")
    with pytest.raises(CotspecError) as err:
        require_file(tmp_path / "empty", "gsm8k/test.jsonl")
    message = str(err.value)
    assert "gsm8k/test.jsonl" in message and str(tmp_path / "empty") in message
    assert GSM8K_TEST_URL in message and switch in message
    assert "\n" not in message
    assert not (tmp_path / "empty").exists()  # offline: nothing created


# The network cannot be reached from here, so the HTTP side is an httpx.MockTransport; the file system
# side (temp file, rename, cleanup) is real.


def test_download_writes_the_served_bytes(online, data_dir: Path, tmp_path: Path) -> None:
    body = (data_dir / "gsm8k" / "test.jsonl").read_bytes()
    requested = []

    def serve(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(200, content=body)

    with httpx.Client(transport=httpx.MockTransport(serve)) as client:
        path = require_file(tmp_path, "gsm8k/test.jsonl", client=client)
    assert requested == [GSM8K_TEST_URL]
    assert path == tmp_path / "gsm8k" / "test.jsonl" and path.read_bytes() == body
    assert [p.name for p in path.parent.iterdir()] == ["test.jsonl"]


def test_failed_download_leaves_nothing(online, tmp_path: Path) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(404))) as client:
        with pytest.raises(CotspecError, match="HTTP 404") as err:
            require_file(tmp_path, "svamp/SVAMP.json", client=client)
    assert "svamp/SVAMP.json" in str(err.value) and "arkilpatel/SVAMP" in str(err.value)
    assert list((tmp_path / "svamp").iterdir()) == []


class _DropsMidway(httpx.SyncByteStream):
    def __iter__(self):
        yield b'[{"ID": "chal-1", "Body": "Each pack'
        raise httpx.ReadError("connection reset by peer")


def test_interrupted_download_leaves_no_partial_file(online, tmp_path: Path) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=_DropsMidway()))) as client:
        with pytest.raises(CotspecError, match="ReadError"):
            require_file(tmp_path, "svamp/SVAMP.json", client=client)
    assert list((tmp_path / "svamp").iterdir()) == []


def test_read_jsonl_numbers_lines_and_skips_blanks(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize(
    ("third_line", "expected"),
    [('{"question": "x", ', "not valid JSON"), ("[1, 2]", "expected a JSON object, got a list")],
)
def test_read_jsonl_bad_line_names_path_and_line(tmp_path: Path, third_line: str, expected: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n' + third_line + "\n", encoding="utf-8")
    with pytest.raises(CotspecError, match=expected) as err:
        list(read_jsonl(path))
    assert str(err.value).startswith(f"{path}:3: ")


def test_read_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "SVAMP.json"
    path.write_text('[\n  {"ID": "chal-1",}\n]\n', encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"{path}:2:\d+: not valid JSON"):
        read_json(path)


def test_get_field_errors_name_where_and_field() -> None:
    with pytest.raises(CotspecError, match=r"^q\.jsonl:4: field 'answer' is missing$"):
        get_field({"question": "x"}, "answer", str, "q.jsonl:4")
    with pytest.raises(CotspecError, match="field 'answer' must be a string or a number, got true/false"):
        get_field({"answer": True}, "answer", (str, int, float), "q.jsonl:4")
    assert get_field({"answer": 7}, "answer", (str, int, float), "q.jsonl:4") == 7


def test_read_jsonl_keeps_a_bom_out_of_line_one(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1})]


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        (b'{"question": "caf\xe9", "answer": 2}', r"q\.jsonl:2: field 'question' is not UTF-8 text \(byte 0xe9\)"),
        (b'\xff{"answer": 2}', r"q\.jsonl:2: not UTF-8 text \(byte 0xff at byte 1 of the line\)"),
    ],
)
def test_read_jsonl_text_that_is_not_utf8_names_line_and_field(tmp_path: Path, second_line: bytes, expected: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "ok", "answer": 1}\n' + second_line + b"\n")
    with pytest.raises(CotspecError, match=expected):
        list(read_jsonl(path))


def test_read_json_text_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "SVAMP.json"
    path.write_bytes(b'[\n  {"Body": "caf\xe9"}\n]\n')
    with pytest.raises(CotspecError, match=r"SVAMP\.json:2:16: not UTF-8 text \(byte 0xe9\)"):
        read_json(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_get_field_refuses_numbers_json_does_not_have(value: float) -> None:
    # Python's json.loads reads NaN and Infinity; no answer is either.
    with pytest.raises(CotspecError, match=r"^q\.jsonl:4: field 'answer' must be a finite number, got -?(NaN|Infinity)$"):
        get_field({"answer": value}, "answer", (str, int, float), "q.jsonl:4")


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1_000_000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()
