"""Helpers for the fault-case tables: a CLI failure is one line, exit 2, no traceback, nothing lost.

    before = snapshot(run_dir)
    result = run_cli("eval", ...)
    assert_one_line_error(result, "--out")
    assert snapshot(run_dir) == before
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def snapshot(*roots: str | os.PathLike[str]) -> dict[str, bytes | None]:
    """Every file under `roots` (recursively) mapped to its bytes; a missing root maps to None.

    SQLite's -wal/-shm side files are skipped: their bytes change when a store is merely opened, while the
    rows are what must not change (compare those with the store's own API).
    """
    files: dict[str, bytes | None] = {}
    for root in map(Path, roots):
        if not root.exists():
            files[str(root)] = None
        elif root.is_file():
            files[str(root)] = root.read_bytes()
        else:
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.name.endswith(("-wal", "-shm")):
                    files[str(path)] = path.read_bytes()
    return files


def assert_one_line_error(result: Any, *fragments: str, exit_code: int = 2) -> str:
    """`result` (a CliResult or CompletedProcess-like with exit_code/returncode, stderr) failed cleanly.

    Checks: the exit status, exactly one non-empty stderr line starting with ``error:``, no traceback,
    and every fragment (case-insensitive) in that line. Returns the line.
    """
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert code == exit_code, f"exit {code}, stderr: {stderr}"
    assert len(errors) == 1, f"expected one error line, got: {stderr}"
    line = errors[0]
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line
