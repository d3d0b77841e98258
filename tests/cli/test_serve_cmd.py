"""`cotspec serve-teacher`: prints the base URL, serves until Ctrl-C, leaves no server behind."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest


def test_serve_teacher_until_ctrl_c():
    entry_point = "from cotspec.cli.main import main; main()"
    command = [sys.executable, "-c", entry_point, "serve-teacher", "--port", "0", "--ctx", "256"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()  # blocks until the server answers (or the command fails)
        assert first_line.startswith("serving smollm2-135m-instruct at http://127.0.0.1:"), first_line
        base_url = first_line.split(" at ")[1].split()[0]
        assert httpx.get(base_url + "/models").status_code == 200

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/models")


def test_serve_teacher_rejects_bad_flags_in_one_line(run_cli):
    result = run_cli("serve-teacher", "--ctx", "4")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --n-ctx: must be >= 16 tokens, got 4"  # --ctx: a hidden alias
