"""Shared fixtures: the real data directory and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Real model servers (llama.cpp teacher, fault proxy). `support` lives next to this file; the path entry
# keeps it importable under any --import-mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from support.servers import fault_proxy, llama_server, llama_server_process  # noqa: E402, F401

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the Hugging Face hub: everything is local or built in the test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _find_data_dir() -> Path | None:
    env = os.environ.get("COTSPEC_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "SOURCES.md").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real benchmark files (`../shared/data`, byte-exact copies of the public sources)."""
    found = _find_data_dir()
    if found is None:
        pytest.fail("benchmark data not found: set COTSPEC_DATA_DIR or place it at ../shared/data")
    return found


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run `cotspec ARGS...` in-process through the real entry point (error handling included)."""
    from cotspec.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:  # typer/click always exit via SystemExit
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
