"""Export stored samples to JSON Lines or Parquet that `datasets.load_dataset` reads.

One record per chain: question id, question, gold, text, extracted, correct, and the teacher's tokens and
top-k candidates as list columns (null for a chain the teacher sent without logprobs). The file is written
next to its destination and renamed into place, so an interrupted export never leaves a half file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, CotspecError
from ..outputs import check_output_file, writing_output
from .records import StoredSample

FORMATS = ("jsonl", "parquet")
_PARQUET_BATCH_ROWS = 1024

PARQUET_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("question", pa.string()),
        ("gold", pa.string()),
        ("text", pa.string()),
        ("extracted", pa.string()),
        ("correct", pa.bool_()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("tokens", pa.list_(pa.string())),
        ("top_tokens", pa.list_(pa.list_(pa.string()))),
        ("top_logprobs", pa.list_(pa.list_(pa.float32()))),
    ]
)


def _record(sample: StoredSample) -> dict:
    return {
        "question_id": sample.question_id,
        "sample_index": sample.sample_index,
        "question": sample.question,
        "gold": sample.gold,
        "text": sample.text,
        "extracted": sample.extracted,
        "correct": sample.correct,
        "finish_reason": sample.finish_reason,
        "prompt_tokens": sample.prompt_tokens,
        "completion_tokens": sample.completion_tokens,
        "tokens": sample.tokens,
        "top_tokens": sample.top_tokens,
        "top_logprobs": sample.top_logprobs,
    }


def _batches(samples: Iterable[StoredSample], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for sample in samples:
        batch.append(_record(sample))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class NothingToExport(CotspecError):
    """The filters left no chain to write."""


def export_samples(samples: Iterable[StoredSample], out: Path, fmt: str) -> int:
    """Write `samples` to `out` in `fmt` (jsonl or parquet); returns the number of records."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    check_output_file(out, example_name=f"samples.{fmt}")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    with writing_output(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        return _write(samples, out, partial, fmt)


def _write(samples: Iterable[StoredSample], out: Path, partial: Path, fmt: str) -> int:
    """Write to `partial`, then rename it to `out`; `partial` never outlives the call."""
    written = 0
    try:
        if fmt == "jsonl":
            with partial.open("w", encoding="utf-8") as fh:
                for batch in _batches(samples, _PARQUET_BATCH_ROWS):
                    fh.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in batch)
                    written += len(batch)
        else:
            with pq.ParquetWriter(partial, PARQUET_SCHEMA, compression="zstd") as writer:
                for batch in _batches(samples, _PARQUET_BATCH_ROWS):
                    writer.write_table(pa.Table.from_pylist(batch, schema=PARQUET_SCHEMA))
                    written += len(batch)
        if not written:
            # An empty JSON Lines file is not a dataset (`datasets` refuses it), and replacing an earlier
            # export with nothing helps nobody.
            raise NothingToExport(f"no chains pass the filters; nothing written, {out} left as it was")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return written
