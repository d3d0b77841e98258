"""Fixtures of the report tests; the run directories themselves are built by `report_runs`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_runs import build_run  # noqa: E402


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, data_dir) -> Path:
    """Built once per session; tests that change it work on a copy (`run_copy`)."""
    return build_run(tmp_path_factory.mktemp("report-run"), data_dir)


@pytest.fixture
def run_copy(real_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(real_run, copy)
    return copy
