"""The run directory's bookkeeping: state.json (one record per stage), versions.json, atomic writes.

state.json::

    {"config_file": "configs/demo-cpu.yaml",
     "stages": {"train": {"status": "done", "inputs_sha256": "…", "settings": {"train.lr": 0.0005, …},
                          "seconds": 12.3, "finished_at": "2025-…Z", "summary": "4 steps, loss 2.31 -> 1.87"}}}

`status` is ``running`` from the moment a stage starts until it finishes (a killed stage stays
``running``: the next run resumes it) and ``done`` after. `seconds` is the stage's wall time over all
the pieces it ran in (`pieces`): a running stage writes it every `HEARTBEAT_S`, so a piece that is
killed (a session that ends) still counts, to within that interval. `inputs_sha256` hashes every setting the
stage's outputs depend on, its upstream stages' included; `settings` are those values whose change
would invalidate finished work (the keys a refusal names).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import CotspecError
from ..outputs import OutputLayout

STATE_FILE = "state.json"
VERSIONS_FILE = "versions.json"
CONFIG_FILE = "config.yaml"
SELECTION_FILE = "selection.json"
STAGING = ".staging"
HEARTBEAT_S = 60.0
"""How often a running stage records its wall time so far."""

RUN_OUTPUT = OutputLayout(
    "cotspec run",
    STATE_FILE,
    frozenset({STATE_FILE, VERSIONS_FILE, CONFIG_FILE, SELECTION_FILE, "teacher", "data", "train", "eval", "model", "report", STAGING}),
    frozenset({STATE_FILE + ".tmp", CONFIG_FILE + ".tmp", SELECTION_FILE + ".tmp", VERSIONS_FILE + ".tmp"}),
)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def write_json(path: Path, value: Any) -> None:
    """Write `path` so that a kill leaves the old or the new file, never half of one."""
    write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CotspecError(f"{path}: unreadable ({err}); delete it to redo the stage that wrote it") from None


class RunState:
    """state.json of one run directory, written through on every change."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / STATE_FILE
        data = read_json(self.path)
        if data is not None and not (isinstance(data, dict) and isinstance(data.get("stages", {}), dict)):
            raise CotspecError(f"{self.path}: not a cotspec run state; choose another --out")
        self.data: dict[str, Any] = data or {"stages": {}}
        self.data.setdefault("stages", {})
        self._lock = threading.RLock()  # the clock thread writes too
        self._clock: dict[str, tuple[float, float]] = {}  # stage -> (seconds of earlier pieces, monotonic start)

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.data)

    def start(self, name: str, inputs_sha256: str, settings: dict[str, Any]) -> None:
        """Record that `name` runs; a stage resumed with the same inputs keeps the time it already took."""
        with self._lock:
            old = self.data["stages"].get(name) or {}
            resumed = old.get("status") == "running" and old.get("inputs_sha256") == inputs_sha256
            earlier = float(old.get("seconds", 0.0)) if resumed else 0.0
            self._clock[name] = (earlier, time.monotonic())
            self.data["stages"][name] = {"status": "running", "inputs_sha256": inputs_sha256, "settings": settings,
                                         "started_at": _now(), "seconds": round(earlier, 2),
                                         "pieces": int(old.get("pieces", 1)) + 1 if resumed else 1}
        self.save()

    def elapsed(self, name: str) -> float:
        """Wall time of `name` over all its pieces, this one so far included."""
        earlier, started = self._clock[name]
        return earlier + time.monotonic() - started

    def tick(self, name: str) -> None:
        with self._lock:
            self.data["stages"][name]["seconds"] = round(self.elapsed(name), 2)
        self.save()

    def finish(self, name: str, summary: str) -> None:
        with self._lock:
            record = self.data["stages"][name]
            record.update(status="done", seconds=round(self.elapsed(name), 2), finished_at=_now(), summary=summary)
        self.save()

    @contextmanager
    def clock(self, name: str, every: float = HEARTBEAT_S) -> Iterator[None]:
        """While the block runs, record the stage's wall time every `every` seconds (a daemon thread)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                self.tick(name)

        thread = threading.Thread(target=beat, name=f"cotspec-clock-{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def forget(self, name: str) -> None:
        with self._lock:
            forgotten = self.data["stages"].pop(name, None) is not None
        if forgotten:
            self.save()


def versions() -> dict[str, str | None]:
    """Versions of cotspec, torch, transformers and python (what the run was made with)."""
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"cotspec": version("cotspec"), "torch": version("torch"), "transformers": version("transformers"),
            "python": platform.python_version()}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
