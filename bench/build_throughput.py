"""`cotspec build` on a store of teacher chains with top-k: the array path against the list path it replaced.

    .venv/bin/python bench/build_throughput.py                         # 10,000 chains, top-5, 2 rounds
    .venv/bin/python bench/build_throughput.py --chains 2000 --rounds 1
    .venv/bin/python bench/build_throughput.py --profile               # also: where each path spends its time

The store is synthetic but real: a SQLite sample store written with `SampleStore`, as `cotspec sample`
writes one. Its chains are GSM8K training solutions (calculator notes removed; two chains per question,
the solution and a reworded copy, so dedup keeps both), cut into word-level pieces the way a BPE
teacher's tokens look (as `store_size.py` does); each position has k candidates drawn from the chain's
own pieces with sorted random log-probabilities, and about one position in ten has fewer than k (servers
send fewer at times). The gsm8k-dev questions are left out, so every chain is used.

Both paths run `build_training_data` (all four formats) on that store, in alternating rounds in this
process so other load on the machine falls on both alike. The "old" path is a faithful copy, kept in this
script, of the conversion before the build kept the teacher's top-k as arrays: the store turns every
blob into Python lists of strings and floats (`_stored_sample`), the build checks them
(`_store_chain`), puts them in each row (`iter_rows`), hashes their JSON and turns them back into Arrow
(`write_rows`, `pa.RecordBatch.from_pylist`). Everything else (plan, exemplars, templates, leak check,
save) is the same code. The script checks that both paths write the same dataset (data file bytes and
`content_sha256`), then prints the CPU model (first "model name" line of /proc/cpuinfo), whether the CPU
has AMX (`amx_tile`), each path's best process CPU time and wall time, and the speed-up old/new.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import itertools
import json
import os
import pstats
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpu_info import cpu_description
from typing import Iterator

import numpy as np
import pyarrow as pa

import cotspec.formats.build as build_module
import cotspec.formats.sources as sources_module
from cotspec.errors import CotspecError
from cotspec.formats import BuildConfig, build_training_data
from cotspec.formats.rows import COLUMNS, DATASET_LAYOUT, FEATURES, _batched
from cotspec.formats.sources import GOLD, ChainRef
from cotspec.formats.templates import COT_FORMATS, FORMATS, IN_CONTEXT_FORMATS, render
from cotspec.store import RunConfig, SampleRow, SampleStore, blob
from cotspec.tasks import gsm8k_dev_ids
from cotspec.tasks.math import load_gsm8k

_PIECES = re.compile(r" ?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]|\n")


# ---- the synthetic store ----------------------------------------------------------------------------


def make_store(path: Path, data_dir: Path, chains: int, k: int, seed: int = 0) -> int:
    """Write `chains` correct teacher chains with top-k to a new store at `path`; returns positions."""
    dev_ids = gsm8k_dev_ids(data_dir)
    pool = [ex for ex in load_gsm8k(data_dir, "train") if ex.id not in dev_ids]
    if 2 * len(pool) < chains:
        raise SystemExit(f"--chains must be <= {2 * len(pool)} (two per GSM8K training question)")
    questions = pool[: (chains + 1) // 2]
    rng = random.Random(seed)
    rows = []
    for ex in questions:
        steps = re.sub(r"<<[^>]*>>", "", ex.rationale or "")
        for index, text in enumerate([steps, "Let's see. " + steps][: chains - len(rows)]):
            tokens = _PIECES.findall(f"{text}\nThe answer is {ex.answer}")
            others = sorted(set(tokens)) + [" the", " is", ".", "\n", " of", " ½"]
            top = []
            for token in tokens:
                width = k if rng.random() > 0.1 else rng.randint(1, k)
                candidates = [token, *[o for o in rng.sample(others, min(width, len(others))) if o != token]][:width]
                values = sorted((rng.uniform(-15, 0) for _ in candidates), reverse=True)
                top.append(list(zip(candidates, values)))
            rows.append(SampleRow(
                question_id=ex.id, sample_index=index, run_id=1, prompt_sha256="0" * 64, text="".join(tokens),
                finish_reason="stop", extracted=ex.answer, correct=True, prompt_tokens=900,
                completion_tokens=len(tokens), generated_tokens=len(tokens), tokens=tokens, top_logprobs=top,
            ))  # fmt: skip
    with SampleStore.open(path, writable=True) as store:
        store.register_run(RunConfig("teacher", "gsm8k", "complex x8", "0" * 64, 0.7, 1.0, k, 256, (), None))
        store.add_questions(questions)
        for start in range(0, len(rows), 500):
            store.add_many(rows[start : start + 500])
    return sum(len(r.tokens) for r in rows)  # type: ignore[arg-type]


# ---- the old path: the conversion as it was, copied --------------------------------------------------


@dataclass
class _OldStoredSample:
    question_id: str
    sample_index: int
    run_id: int
    question: str
    gold: str
    prompt_sha256: str
    text: str
    finish_reason: str
    extracted: str | None
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    generated_tokens: int
    created_at: float
    has_logprobs: bool
    tokens: list[str] | None
    top_tokens: list[list[str]] | None
    top_logprobs: list[list[float]] | None


@dataclass
class _OldChain:
    ref: ChainRef
    text: str
    tokens: list[str] | None = None
    top_tokens: list[list[str]] | None = None
    top_logprobs: list[list[float]] | None = None

    @property
    def has_logprobs(self) -> bool:
        return self.tokens is not None


def _old_stored_sample(self, rec: tuple, table) -> _OldStoredSample:
    pieces = table.strings if table is not None else []  # the list `_all_pieces` returned
    (qid, index, run_id, question, gold, prompt_sha, text, finish, extracted, correct,
     prompt_tokens, completion_tokens, generated_tokens, created_at, has_lp, topk_blob) = rec  # fmt: skip
    tokens = top_tokens = top_logprobs = None
    if has_lp and topk_blob is not None:
        try:
            topk = blob.decode(topk_blob)
        except blob.BlobError as err:
            raise CotspecError(f"{self.path}: sample {qid}#{index} has a damaged top-k blob ({err})") from None
        tokens = [pieces[i] for i in topk.chosen.tolist()]
        top_tokens, top_logprobs = [], []
        for ids_row, lp_row in zip(topk.candidate_ids.tolist(), topk.candidate_logprobs.tolist()):
            width = len(ids_row) - ids_row.count(blob.PAD_ID)
            top_tokens.append([pieces[i] for i in ids_row[:width]])
            top_logprobs.append(lp_row[:width])
    return _OldStoredSample(
        question_id=qid, sample_index=index, run_id=run_id, question=question, gold=gold,
        prompt_sha256=prompt_sha, text=text, finish_reason=finish, extracted=extracted,
        correct=bool(correct), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        generated_tokens=generated_tokens, created_at=created_at, has_logprobs=bool(has_lp),
        tokens=tokens, top_tokens=top_tokens, top_logprobs=top_logprobs,
    )  # fmt: skip


def _old_is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _old_store_chain(ref: ChainRef, sample: _OldStoredSample, counts: Counter) -> _OldChain:
    chain = _OldChain(ref, sample.text)
    if not sample.has_logprobs or sample.tokens is None:
        counts["store_chains_without_logprobs"] += 1
    elif "".join(sample.tokens) != sample.text:
        counts["store_chains_logprobs_dropped_tokens_differ_from_text"] += 1
    elif not _old_is_valid_unicode("\0".join(itertools.chain.from_iterable(sample.top_tokens or ()))):
        counts["store_chains_logprobs_dropped_invalid_unicode"] += 1
    else:
        chain.tokens, chain.top_tokens, chain.top_logprobs = sample.tokens, sample.top_tokens, sample.top_logprobs
        counts["store_chains_with_logprobs"] += 1
    return chain


def _old_iter_rows(questions, formats, repeats, sampler) -> Iterator[dict]:
    ordered = [fmt for fmt in FORMATS if fmt in formats]
    position = dict.fromkeys(ordered, 0)
    for question, chains in questions:
        example = question.example
        for fmt in ordered:
            for chain in chains if fmt in COT_FORMATS else [None]:
                times = repeats[fmt][position[fmt]]
                position[fmt] += 1
                base_id = f"{fmt}:{example.id}" + (f":{chain.ref.key}" if chain is not None else "")
                for copy in range(times):
                    row_id = base_id if copy == 0 else f"{base_id}#{copy}"
                    exemplars = sampler.draw(row_id, example.id) if fmt in IN_CONTEXT_FORMATS and sampler else []
                    prompt, target = render(fmt, example, exemplars, None if chain is None else chain.text)
                    with_lp = chain is not None and chain.has_logprobs
                    yield {
                        "id": row_id,
                        "question_id": example.id,
                        "format": fmt,
                        "source": "gold_answer" if chain is None else chain.ref.source,
                        "prompt": prompt,
                        "target": target,
                        "exemplar_ids": [e.id for e in exemplars],
                        "has_logprobs": with_lp,
                        "teacher_tokens": chain.tokens if with_lp else [],
                        "teacher_top_tokens": chain.top_tokens if with_lp else [],
                        "teacher_top_logprobs": chain.top_logprobs if with_lp else [],
                    }
    for fmt in ordered:
        if position[fmt] != len(repeats[fmt]):
            raise RuntimeError(f"{fmt}: planned {len(repeats[fmt])} rows but generated {position[fmt]}")


class _OldContentHasher:
    def __init__(self) -> None:
        self._sha = hashlib.sha256(DATASET_LAYOUT.encode())

    def update(self, row) -> None:
        head = [row[c] for c in COLUMNS if c != "teacher_top_logprobs"]
        self._sha.update(json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        logprobs = itertools.chain.from_iterable(row["teacher_top_logprobs"])
        self._sha.update(np.fromiter(logprobs, dtype="<f4").tobytes())

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _old_write_rows(rows, path: Path) -> tuple[int, str]:
    schema = FEATURES.arrow_schema
    hasher = _OldContentHasher()
    written = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batched(rows, 1000):
            for row in batch:
                hasher.update(row)
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            written += len(batch)
    return written, hasher.hexdigest()


@contextmanager
def old_conversion() -> Iterator[None]:
    """Swap the list path back in for the duration (GOLD chains never occur here: no --gold)."""
    assert GOLD == "gold"
    saved = (SampleStore._stored_sample, sources_module._store_chain, build_module.iter_rows, build_module.write_rows)
    SampleStore._stored_sample = _old_stored_sample  # type: ignore[method-assign]
    sources_module._store_chain = _old_store_chain  # type: ignore[assignment]
    build_module.iter_rows = _old_iter_rows  # type: ignore[assignment]
    build_module.write_rows = _old_write_rows  # type: ignore[assignment]
    try:
        yield
    finally:
        SampleStore._stored_sample, sources_module._store_chain, build_module.iter_rows, build_module.write_rows = saved


# ---- measuring --------------------------------------------------------------------------------------


def one_build(store: Path, out: Path, data_dir: Path, profile: bool) -> tuple[float, float, str, str | None]:
    """(process CPU s, wall s, content sha256, profile text) of one build into `out` (replaced)."""
    shutil.rmtree(out, ignore_errors=True)
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    build_training_data(BuildConfig(out=out, store=store, data_dir=data_dir))
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    manifest = json.loads((out / "build.json").read_text())
    report = None
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
        report = text.getvalue()
    return cpu, wall, manifest["content_sha256"], report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("COTSPEC_DATA_DIR", shared)),
                        help="benchmark data folder (default: $COTSPEC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--chains", type=int, default=10_000, help="teacher chains in the store (two per question)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per position (the paper keeps 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating old/new rounds; the best of each counts")
    parser.add_argument("--profile", action="store_true", help="print each path's top functions (cProfile, last round)")
    args = parser.parse_args()
    os.environ.setdefault("COTSPEC_PROGRESS", "off")

    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory(prefix="build-throughput-") as tmp:
        store = Path(tmp) / "teacher.db"
        started = time.perf_counter()
        positions = make_store(store, args.data_dir, args.chains, args.top_k)
        print(f"store: {args.chains} chains, {positions / args.chains:.0f} tokens per chain, top-{args.top_k}, "
              f"{store.stat().st_size / 1e6:.1f} MB (written in {time.perf_counter() - started:.0f} s)")  # fmt: skip
        best: dict[str, list[float]] = {"old": [float("inf")] * 2, "new": [float("inf")] * 2}
        digests, data_files, reports = {}, {}, {}
        for round_ in range(args.rounds):
            for path in ("old", "new"):
                out = Path(tmp) / f"out-{path}"
                profile = args.profile and round_ == args.rounds - 1
                if path == "old":
                    with old_conversion():
                        cpu, wall, digests[path], reports[path] = one_build(store, out, args.data_dir, profile)
                else:
                    cpu, wall, digests[path], reports[path] = one_build(store, out, args.data_dir, profile)
                data_file = out / "train" / "data-00000-of-00001.arrow"
                data_files[path] = hashlib.sha256(data_file.read_bytes()).hexdigest()
                best[path] = [min(best[path][0], cpu), min(best[path][1], wall)]
                print(f"  round {round_ + 1} {path}: cpu {cpu:.2f} s, wall {wall:.2f} s")
        if digests["old"] != digests["new"] or data_files["old"] != data_files["new"]:
            raise SystemExit(f"the two paths built different datasets: {digests} {data_files}")
        print(f"same dataset from both paths: content sha256 {digests['new'][:16]}, data file sha256 {data_files['new'][:16]}")
        print(f"{'path':<6}{'cpu s':>8}{'wall s':>8}")
        for path in ("old", "new"):
            print(f"{path:<6}{best[path][0]:>8.2f}{best[path][1]:>8.2f}")
        print(f"speed-up old/new: {best['old'][0] / best['new'][0]:.2f}x process CPU time, "
              f"{best['old'][1] / best['new'][1]:.2f}x wall")  # fmt: skip
        for path in ("old", "new"):
            if reports.get(path):
                print(f"\n--- {path} path, top functions by own time (cProfile) ---\n{reports[path]}")


if __name__ == "__main__":
    main()
