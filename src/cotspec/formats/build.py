"""Build the distillation training set: plan, render, stream to Arrow, check, save with a manifest.

    from cotspec.formats import BuildConfig, build_training_data
    data = build_training_data(BuildConfig(out=Path("data/gold"), gold=True))   # DatasetDict {"train"}

The output directory holds what `DatasetDict.save_to_disk` writes plus `build.json` (sources, counts
per format, weights, seed, dev exclusions, and the rows' `content_sha256`, which the trainer keys its
tokenization cache on). It appears complete or not at all: everything is written next to it first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from datasets import Dataset, DatasetDict, DatasetInfo, load_from_disk

from .. import __version__
from ..errors import ConfigError, CotspecError
from ..progress import make_progress, quiet_datasets_bars
from ..store import SampleStore
from ..tasks import gsm8k_dev_ids, resolve_data_dir
from ..tasks.datadir import sha256_file
from ..tasks.math import GSM8K_FILES, load_gsm8k
from ..outputs import BUILD_OUTPUT, check_output_dir, writing_output
from .config import BuildConfig
from .exemplars import ExemplarSampler
from .leakcheck import assert_no_dev_questions
from .mixture import mixture_counts
from .rows import DATASET_LAYOUT, FEATURES, iter_rows, natural_counts, write_rows
from .sources import GOLD, STORE, STORE_COUNTERS, Chain, Plan, QuestionPlan, iter_chains, make_plan
from .templates import IN_CONTEXT_FORMATS

logger = logging.getLogger(__name__)

MANIFEST = BUILD_OUTPUT.marker
SPLIT = "train"  # with dataset_dict.json and MANIFEST, all that BUILD_OUTPUT lets the output directory hold


def build_training_data(config: BuildConfig) -> DatasetDict:
    """Build the training set described by `config`, save it to `config.out`, and return it (memory-mapped)."""
    started = time.perf_counter()
    data_dir = resolve_data_dir(config.data_dir)
    out = Path(config.out)
    check_output_dir(out, BUILD_OUTPUT, replaced_whole=True)
    train = load_gsm8k(data_dir, "train")
    by_id = {ex.id: ex for ex in train}
    dev_ids = gsm8k_dev_ids(data_dir)
    outside = sorted(dev_ids - set(by_id))
    if outside:
        raise CotspecError(f"gsm8k-dev index names {outside[0]}, which is not a line of {GSM8K_FILES['train']} in {data_dir}")

    store = SampleStore.open(config.store) if config.store is not None else None
    try:
        plan = make_plan(train, dev_ids, store, gold=config.gold, limit=config.limit, max_per_question=config.max_per_question)
        if not plan.questions:
            raise ConfigError(
                "store",
                f"{config.store}: no correct chain of a GSM8K training question outside gsm8k-dev; "
                "nothing to train on (add `gold` to use GSM8K's own solutions)",
            )
        natural = natural_counts(plan.questions, config.formats)
        repeats = mixture_counts(natural, config.weight_of, config.seed)
        sampler = None
        if IN_CONTEXT_FORMATS & set(config.formats):
            sampler = ExemplarSampler([ex for ex in train if ex.id not in dev_ids], config.shots, config.seed)
        chain_counts: Counter = Counter()
        row_counts: Counter = Counter()
        chains = _with_progress(iter_chains(plan, store, chain_counts), len(plan.questions))
        rows = _tally(iter_rows(chains, config.formats, repeats, sampler), row_counts)
        dev_questions = {qid: by_id[qid].question for qid in dev_ids}

        def manifest(n_rows: int, content_sha: str) -> dict:
            return _manifest(config, data_dir, plan, natural, row_counts, chain_counts, n_rows, content_sha, started)

        with writing_output(out):
            n_rows, content_sha = _save(rows, out, dev_questions, manifest)
    finally:
        if store is not None:
            store.close()
    logger.info("built %d rows into %s (content sha256 %s)", n_rows, out, content_sha[:12])
    return load_from_disk(str(out))


def _save(
    rows: Iterable[dict], out: Path, dev_questions: Mapping[str, str], manifest: Callable[[int, str], dict]
) -> tuple[int, str]:
    """Stream `rows` to Arrow next to `out`, check them for dev questions, save with build.json, swap in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.building-", dir=out.parent) as scratch:
        arrow_path = Path(scratch) / "rows.arrow"
        n_rows, content_sha = write_rows(rows, arrow_path)
        dataset = Dataset.from_file(str(arrow_path), info=DatasetInfo(features=FEATURES))
        assert_no_dev_questions(dataset, dev_questions)
        staged = Path(scratch) / "out"
        with quiet_datasets_bars():
            DatasetDict({SPLIT: dataset}).save_to_disk(str(staged))
        del dataset  # release the memory map of rows.arrow before the scratch dir goes
        text = json.dumps(manifest(n_rows, content_sha), indent=2, ensure_ascii=False) + "\n"
        (staged / MANIFEST).write_text(text, encoding="utf-8")
        _replace_dir(staged, out)
    return n_rows, content_sha


def load_training_data(path: str | Path) -> tuple[DatasetDict, dict]:
    """A built training set and its manifest; CotspecError if `path` is not a `cotspec build` output."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CotspecError(f"{path}: no {MANIFEST} here, so not a `cotspec build` output; build training data there first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CotspecError(f"{manifest_path}: not valid JSON ({err}); build the training data there again") from None
    if manifest.get("layout") != DATASET_LAYOUT:
        raise CotspecError(f"{manifest_path}: layout {manifest.get('layout')!r}, this cotspec reads {DATASET_LAYOUT!r}; rebuild it")
    return load_from_disk(str(path)), manifest


def _replace_dir(staged: Path, out: Path) -> None:
    """Move `staged` to `out`, replacing an earlier build; the old one is removed only after the move.

    `check_output_dir` made sure `out` holds nothing but an earlier build, so nothing else is deleted.
    """
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staged, out)
        shutil.rmtree(old)
    else:
        os.replace(staged, out)


def _with_progress(items: Iterator[tuple[QuestionPlan, list[Chain]]], total: int) -> Iterator[tuple[QuestionPlan, list[Chain]]]:
    with make_progress() as progress:
        bar = progress.add_task("build", total=total)
        for item in items:
            yield item
            progress.advance(bar)


def _tally(rows: Iterator[dict], counts: Counter) -> Iterator[dict]:
    """Pass rows through, counting them per format and per (format, "logprobs")."""
    for row in rows:
        counts[row["format"]] += 1
        counts[row["format"], "logprobs"] += row["has_logprobs"]
        yield row


def _manifest(
    config: BuildConfig,
    data_dir: Path,
    plan: Plan,
    natural: dict[str, int],
    row_counts: Counter,
    chain_counts: Counter,
    n_rows: int,
    content_sha: str,
    started: float,
) -> dict:
    per_format = {
        fmt: {
            "weight": None if config.weights is None else config.weights[config.formats.index(fmt)],
            "natural_rows": natural[fmt],
            "rows": row_counts[fmt],
            "share": round(row_counts[fmt] / n_rows, 6),
            "rows_with_logprobs": row_counts[fmt, "logprobs"],
        }
        for fmt in config.formats
    }
    n_store = sum(1 for q in plan.questions for c in q.chains if c.source == STORE)
    n_gold = sum(1 for q in plan.questions for c in q.chains if c.source == GOLD)
    sources: dict[str, object] = {}
    if config.store is not None:
        counts = plan.counts + chain_counts
        sources["store"] = {"path": str(config.store), "chains": n_store, **{name: counts[name] for name in STORE_COUNTERS}}
    if config.gold:
        sources["gold"] = {"chains": n_gold}
    return {
        "layout": DATASET_LAYOUT,
        "content_sha256": content_sha,
        "rows": n_rows,
        "split": SPLIT,
        "config": config.to_json(),
        "mixture": "natural: every row once" if config.weights is None
        else "weighted: format f has w_f/sum(w) of the natural total of rows (cotspec.formats.mixture)",
        "formats": per_format,
        "questions": len(plan.questions),
        "chains": n_store + n_gold,
        "dev_questions_excluded": len(plan.dev_questions),
        "sources": sources,
        "data": {"gsm8k_train": GSM8K_FILES["train"], "gsm8k_train_sha256": sha256_file(data_dir / GSM8K_FILES["train"])},
        "cotspec_version": __version__,
        "build_seconds": round(time.perf_counter() - started, 2),
    }

