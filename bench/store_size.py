"""Sample-store size and write rate: the binary top-k column against top-k stored as JSON text.

    .venv/bin/python bench/store_size.py --chains 2000 --top-k 5

Chains are real GSM8K training solutions (calculator notes removed), cut into word-level pieces the way a
BPE teacher's tokens look; each position gets k candidates drawn from the chain's own pieces with sorted
random log-probabilities (only their count and spread matter for size). Both stores are real SQLite
files in WAL mode, written one chain per transaction as the sampler does. The peer keeps everything the
same except the top-k column, which holds the OpenAI-style JSON (`{"tokens": [...], "top_logprobs":
[{token: logprob}, ...]}`). Prints bytes per chain, chains written per second, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
import tempfile
import time
from pathlib import Path

from cotspec.store import RunConfig, SampleRow, SampleStore
from cotspec.tasks import get_task, resolve_data_dir

_PIECES = re.compile(r" ?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]|\n")


def make_rows(texts: list[str], k: int, seed: int) -> list[SampleRow]:
    rng = random.Random(seed)
    rows = []
    for index, text in enumerate(texts):
        tokens = _PIECES.findall(text)
        pool = sorted(set(tokens)) + [" the", " is", ".", "\n", " of"]
        top = []
        for token in tokens:
            others = rng.sample([p for p in pool if p != token], min(k - 1, len(pool) - 1))
            values = sorted((rng.uniform(-15, 0) for _ in range(len(others) + 1)), reverse=True)
            top.append(list(zip([token, *others], values)))
        rows.append(
            SampleRow(
                question_id=f"q{index}", sample_index=0, run_id=1, prompt_sha256="0" * 64, text="".join(tokens),
                finish_reason="stop", extracted="1", correct=True, prompt_tokens=900,
                completion_tokens=len(tokens), generated_tokens=len(tokens), tokens=tokens, top_logprobs=top,
            )  # fmt: skip
        )
    return rows


def write_binary(path: Path, rows: list[SampleRow]) -> float:
    from cotspec.tasks.base import Example

    with SampleStore.open(path, writable=True) as store:
        store.register_run(RunConfig("t", "gsm8k", "p", "0" * 64, 0.5, 1.0, 5, 256, (), None))
        store.add_questions([Example(r.question_id, "q", "1") for r in rows])
        start = time.perf_counter()
        for row in rows:
            store.add(row)
        return time.perf_counter() - start


def write_json(path: Path, rows: list[SampleRow]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE samples (question_id TEXT, sample_index INTEGER, text TEXT, logprobs TEXT, "
        "PRIMARY KEY (question_id, sample_index))"
    )
    start = time.perf_counter()
    for row in rows:
        payload = json.dumps({"tokens": row.tokens, "top_logprobs": [dict(p) for p in row.top_logprobs]})
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO samples VALUES (?, ?, ?, ?)", (row.question_id, row.sample_index, row.text, payload))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=2000, help="chains to write (GSM8K train solutions)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per position (the paper keeps 5)")
    parser.add_argument("--data-dir", default=None, help="benchmark files (default: $COTSPEC_DATA_DIR)")
    args = parser.parse_args()

    task = get_task("gsm8k")
    examples = task.load(resolve_data_dir(args.data_dir), "train")[: args.chains]
    rows = make_rows([ex.rationale or ex.question for ex in examples], args.top_k, seed=0)
    positions = sum(len(r.tokens) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        binary, text = Path(tmp) / "binary.db", Path(tmp) / "json.db"
        t_binary = write_binary(binary, rows)
        with sqlite3.connect(binary) as conn:  # fold the WAL in, as a finished run's file would be
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        t_json = write_json(text, rows)
        size_binary, size_json = file_size(binary), file_size(text)
    n = len(rows)
    print(f"{n} chains, {positions / n:.0f} positions per chain, top-{args.top_k}")
    print(f"{'store':<22}{'bytes/chain':>12}{'chains/s':>10}")
    print(f"{'binary top-k (ours)':<22}{size_binary / n:>12.0f}{n / t_binary:>10.0f}")
    print(f"{'JSON text top-k':<22}{size_json / n:>12.0f}{n / t_json:>10.0f}")
    print(f"size ratio JSON/ours: {size_json / size_binary:.2f}x; write rate ratio ours/JSON: "
          f"{(n / t_binary) / (n / t_json):.2f}x")


if __name__ == "__main__":
    main()
