"""Per-task prediction files: append-only JSON Lines that survive being killed mid-write."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO

from ..errors import CotspecError
from ..tasks import user


def predictions_path(out: Path, task_name: str) -> Path:
    """`bbh:date_understanding` -> predictions/bbh/date_understanding.jsonl; `jsonl:/x/y.jsonl` ->
    predictions/jsonl/y-<hash>.jsonl.

    A user's file is named by its stem and a hash of its absolute path: `a/q.jsonl` and `b/q.jsonl` get
    files of their own, and the same file gets the same one on every re-run.
    """
    if task_name.startswith(user.PREFIX):
        source = user.task_file(task_name)
        digest = hashlib.sha256(os.fsencode(source)).hexdigest()[:12]
        return out / "predictions" / "jsonl" / f"{source.stem}-{digest}.jsonl"
    if ":" in task_name:
        prefix, rest = task_name.split(":", 1)
        return out / "predictions" / prefix / f"{rest}.jsonl"
    return out / "predictions" / f"{task_name}.jsonl"


class PredictionFile:
    """One task's predictions. Records are keyed by example id; appends are flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path
        self._handle: IO[str] | None = None

    def load(self) -> dict[str, dict]:
        """Records already written, by id. A torn last line (the process was killed mid-write) is cut off."""
        if not self.path.exists():
            return {}
        records: dict[str, dict] = {}
        raw = self.path.read_bytes()
        good_end = 0
        for line_no, line in enumerate(raw.splitlines(keepends=True), start=1):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn line")
                record = json.loads(line)
                records[record["id"]] = record
            except (ValueError, KeyError, TypeError) as exc:
                if good_end + len(line) == len(raw):
                    break  # only the last line may be torn: drop it below
                raise CotspecError(
                    f"{self.path}:{line_no}: not a prediction record ({exc}); "
                    "delete the file to re-run that task"
                ) from None
            good_end += len(line)
        if good_end != len(raw):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
        return records

    def append(self, record: dict) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def rewrite_in_order(self, records: dict[str, dict], order: list[str]) -> None:
        """Rewrite the file atomically with `order`'s ids first (dataset order), then any other records.

        Generation finishes examples out of order (batches are length-sorted); people read these files.
        """
        self.close()
        ranked = [records[i] for i in order if i in records]
        ranked += [r for i, r in records.items() if i not in set(order)]
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in ranked)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON so that readers see the old file or the new one, never half of either."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
