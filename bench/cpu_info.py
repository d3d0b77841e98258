"""The CPU a bench ran on, for its output: the kinds this project runs on differ several-fold in bf16
speed (AMX or not), so every figure names it. Imported by the bench scripts (run as `python bench/x.py`,
which puts bench/ on the path)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def cpu_description() -> str:
    """``model name`` of /proc/cpuinfo, whether it has AMX tiles (amx_tile), and the core count."""
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    amx = "amx_tile" in (flags.group(1).split() if flags else [])
    return f"{model.group(1) if model else 'unknown CPU'}; amx_tile: {'yes' if amx else 'no'}; {os.cpu_count()} cores"
