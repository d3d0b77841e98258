"""A model is identified by the content of its files; unchanged files are only stat'ed, never re-read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cotspec.evaluate import model_files
from cotspec.evaluate.config import EvalConfig
from cotspec.evaluate.model_files import first_difference, fingerprint, local_model_files


def _config(model: str, **overrides) -> EvalConfig:
    return EvalConfig(model=model, tasks=("gsm8k",), out=Path("runs/x"), **overrides)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text('{"hidden": 8}')
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    (path / ".cache").mkdir()  # not a file of the model
    return path


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """Names of the files hashed (read in full) from now on."""
    names: list[str] = []
    real = model_files.sha256_file

    def counting(path):
        names.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(model_files, "sha256_file", counting)
    return names


def test_local_files_of_each_kind_of_reference(model_dir, tmp_path):
    assert local_model_files(_config(str(model_dir))) == [model_dir / "config.json", model_dir / "model.safetensors"]
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert local_model_files(_config(str(gguf))) == [gguf]
    assert local_model_files(_config("some-org/some-hub-model")) is None
    served = _config(str(model_dir), backend="openai", base_urls=("http://127.0.0.1:1/v1",))
    assert local_model_files(served) is None  # the server's model is not ours to read


def test_unchanged_files_are_not_read_again(model_dir, hashed):
    files = local_model_files(_config(str(model_dir)))
    recorded = fingerprint(files)
    assert sorted(hashed) == ["config.json", "model.safetensors"]
    hashed.clear()
    assert fingerprint(files, recorded) == recorded
    assert hashed == []


def test_a_model_retrained_in_place_is_told_apart(model_dir, hashed):
    files = local_model_files(_config(str(model_dir)))
    recorded = fingerprint(files)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"\x01" * 64)  # same name, same size: only the content tells
    hashed.clear()
    current = fingerprint(files, recorded)
    assert hashed == ["model.safetensors"]
    assert first_difference(recorded, current) == "model.safetensors changed"


def test_a_touched_or_copied_model_is_the_same_model(model_dir):
    files = local_model_files(_config(str(model_dir)))
    recorded = fingerprint(files)
    stat = (model_dir / "config.json").stat()
    os.utime(model_dir / "config.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert first_difference(recorded, fingerprint(files, recorded)) is None


def test_added_and_removed_files_count():
    one = {"a": {"sha256": "1"}}
    assert first_difference(one, {**one, "b": {"sha256": "2"}}) == "b was added"
    assert first_difference({**one, "b": {"sha256": "2"}}, one) == "b was removed"
    assert first_difference(one, dict(one)) is None
