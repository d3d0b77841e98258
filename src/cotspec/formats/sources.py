"""Which chains a build trains on, and reading them back with the teacher's tokens.

Two passes over the sample store keep memory flat however many chains it holds: `make_plan` reads
texts only (no top-k) to decide which (question, chain) pairs are used, and `iter_chains` reads them again
with their top-k, one question at a time, in the same order. Questions come in the store's order (as
first sampled), then the --gold-only questions in GSM8K file order.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import CotspecError
from ..store import SampleStore, StoredSample, TeacherTopK
from ..tasks.base import Example
from .templates import gold_chain

STORE = "store"
GOLD = "gold"

STORE_COUNTERS = (
    "store_chains_read",
    "store_dev_chains_dropped",
    "gold_chains_equal_to_store_chain",
    "store_chains_with_logprobs",
    "store_chains_without_logprobs",
    "store_chains_logprobs_dropped_tokens_differ_from_text",
    "store_chains_logprobs_dropped_invalid_unicode",
)
"""What build.json reports about a store's chains (`Plan.counts` and `iter_chains`' counts), zeros included."""


@dataclass(frozen=True)
class ChainRef:
    """A chain chosen for training, by where it comes from: store sample index, or the gold solution."""

    source: str
    sample_index: int | None = None

    @property
    def key(self) -> str:
        """Its part of a row id: `s<sample index>` or `gold`."""
        return GOLD if self.source == GOLD else f"s{self.sample_index}"


@dataclass
class Chain:
    """A chain's text, with the teacher's tokens and top-k candidates when they match the text.

    `tokens`, `top_tokens` and `top_logprobs` spell `teacher` as Python lists, made on each access (tests,
    debugging); the build reads `teacher` itself.
    """

    ref: ChainRef
    text: str
    teacher: TeacherTopK | None = None
    """The store's arrays, as the rows' teacher columns are made from them (see `teacher_columns`)."""

    @property
    def has_logprobs(self) -> bool:
        return self.teacher is not None

    @property
    def tokens(self) -> list[str] | None:
        return None if self.teacher is None else self.teacher.lists()[0]

    @property
    def top_tokens(self) -> list[list[str]] | None:
        return None if self.teacher is None else self.teacher.lists()[1]

    @property
    def top_logprobs(self) -> list[list[float]] | None:
        return None if self.teacher is None else self.teacher.lists()[2]


@dataclass
class QuestionPlan:
    example: Example
    chains: list[ChainRef]

    @property
    def store_indices(self) -> list[int]:
        return [c.sample_index for c in self.chains if c.source == STORE]  # type: ignore[misc]


@dataclass
class Plan:
    questions: list[QuestionPlan]
    counts: Counter = field(default_factory=Counter)
    """Manifest counters (names in `STORE_COUNTERS`): chains read, dev chains dropped, gold duplicates."""
    dev_questions: set[str] = field(default_factory=set)
    """gsm8k-dev questions some source offered and the build left out."""


def make_plan(
    train: Sequence[Example],
    dev_ids: frozenset[str],
    store: SampleStore | None,
    *,
    gold: bool,
    limit: int | None,
    max_per_question: int | None,
) -> Plan:
    """Decide the questions and chains of a build (dev questions never enter it)."""
    by_id = {ex.id: ex for ex in train}
    plan = Plan(questions=[])
    store_chains: dict[str, list[ChainRef]] = {}
    gold_duplicates: set[str] = set()
    if store is not None:
        for sample in store.iter_samples(correct_only=True, dedup=True, max_per_question=max_per_question, with_topk=False):
            example = _known_example(store.path, sample, by_id)
            plan.counts["store_chains_read"] += 1
            if sample.question_id in dev_ids:
                plan.dev_questions.add(sample.question_id)
                plan.counts["store_dev_chains_dropped"] += 1
                continue
            store_chains.setdefault(sample.question_id, []).append(ChainRef(STORE, sample.sample_index))
            if gold and sample.text == gold_chain(example):
                gold_duplicates.add(sample.question_id)
    if gold:
        plan.dev_questions.update(ex.id for ex in train if ex.id in dev_ids)
    usable = [ex.id for ex in train if ex.id not in dev_ids and (gold or ex.id in store_chains)]
    chosen = set(usable[:limit])
    order = [qid for qid in store_chains if qid in chosen]
    if gold:
        order += [qid for qid in usable if qid in chosen and qid not in store_chains]
    for qid in order:
        chains = list(store_chains.get(qid, ()))
        if gold and qid not in gold_duplicates:
            chains.append(ChainRef(GOLD))
        plan.counts["gold_chains_equal_to_store_chain"] += int(gold and qid in gold_duplicates)
        plan.questions.append(QuestionPlan(by_id[qid], chains))
    return plan


def iter_chains(plan: Plan, store: SampleStore | None, counts: Counter) -> Iterator[tuple[QuestionPlan, list[Chain]]]:
    """Each planned question with its chains, in plan order; store chains carry their top-k when usable.

    `counts` receives how many store chains had logprobs, and why any were dropped.
    """
    groups: Iterator[tuple[str, Iterator[StoredSample]]] = iter(())
    if store is not None and any(q.store_indices for q in plan.questions):
        # No dedup or per-question cap here: the plan already chose the sample indices to read.
        samples = store.iter_samples(correct_only=True, with_topk=True)
        groups = itertools.groupby(samples, key=lambda s: s.question_id)
    for question in plan.questions:
        stored: dict[int, StoredSample] = {}
        wanted = question.store_indices
        if wanted:
            assert store is not None
            stored = _next_group(groups, question.example.id, set(wanted), store.path)
        chains = []
        for ref in question.chains:
            if ref.source == GOLD:
                chains.append(Chain(ref, gold_chain(question.example)))
            else:
                chains.append(_store_chain(ref, stored[ref.sample_index], counts))  # type: ignore[index]
        yield question, chains


def _next_group(groups, question_id: str, wanted: set[int], path: Path) -> dict[int, StoredSample]:
    for qid, samples in groups:
        if qid == question_id:
            found = {s.sample_index: s for s in samples if s.sample_index in wanted}
            if set(found) == wanted:
                return found
            break
    raise CotspecError(
        f"{path}: changed while the build was reading it (samples of {question_id} differ between passes); "
        "re-run `cotspec build` once `cotspec sample` has finished writing to it"
    )


def _store_chain(ref: ChainRef, sample: StoredSample, counts: Counter) -> Chain:
    chain = Chain(ref, sample.text)
    topk = sample.topk
    if not sample.has_logprobs or topk is None:
        counts["store_chains_without_logprobs"] += 1
    elif topk.table.join(topk.chosen) != sample.text:
        # e.g. byte-level token strings, or a chain cut mid-token after its answer line: the positions
        # would not line up with the target, so the row is kept as plain text.
        counts["store_chains_logprobs_dropped_tokens_differ_from_text"] += 1
    elif not topk.representable:
        # A candidate with a lone surrogate (half a UTF-16 pair, as some servers' JSON carries) is kept by
        # the store but cannot be an Arrow string.
        counts["store_chains_logprobs_dropped_invalid_unicode"] += 1
    else:
        chain.teacher = topk
        counts["store_chains_with_logprobs"] += 1
    return chain


def _known_example(path: Path, sample: StoredSample, by_id: dict[str, Example]) -> Example:
    example = by_id.get(sample.question_id)
    if example is None:
        raise CotspecError(
            f"{path}: holds question {sample.question_id}, which is not a GSM8K training question; "
            "cotspec build trains on chains for gsm8k/train questions only (sample with --task gsm8k --split train)"
        )
    if sample.question != example.question:
        raise CotspecError(
            f"{path}: the stored text of {sample.question_id} differs from gsm8k/train.jsonl in the data dir; "
            "point --data-dir at the data the store was sampled from"
        )
    return example
