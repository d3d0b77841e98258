"""Which store chains a build uses, and reading them back with their teacher tokens (real SQLite store)."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from support.sample_rows import run_config

from cotspec.errors import CotspecError
from cotspec.formats.sources import iter_chains, make_plan
from cotspec.formats.templates import gold_chain
from cotspec.store import SampleStore
from cotspec.tasks.base import Example


def _plan(store_path, gsm8k_train, dev_ids, **kwargs):
    settings = {"gold": False, "limit": None, "max_per_question": None, **kwargs}
    with SampleStore.open(store_path) as store:
        plan = make_plan(gsm8k_train, dev_ids, store, **settings)
        counts: Counter = Counter()
        chains = [(q.example.id, c) for q, c in iter_chains(plan, store, counts)]
    return plan, chains, counts


def test_store_plan_keeps_correct_unique_non_dev_chains(teacher_store, gsm8k_train, dev_ids):
    plan, chains, counts = _plan(teacher_store.path, gsm8k_train, dev_ids)
    assert [(q.example.id, [c.key for c in q.chains]) for q in plan.questions] == [
        ("gsm8k/train/0", ["s0", "s3", "s4"]),  # s1 is wrong, s2 repeats s0
        ("gsm8k/train/1", ["s0"]),
    ]  # train/2 has no correct chain; the dev question is dropped
    assert plan.dev_questions == {teacher_store.dev_id}
    assert plan.counts["store_dev_chains_dropped"] == 1
    by_key = {(qid, c.ref.key): c for qid, chain_list in chains for c in chain_list}
    good = by_key[("gsm8k/train/0", "s0")]
    stored = teacher_store.chains[("gsm8k/train/0", 0)]
    assert good.text == stored.text and "".join(good.tokens) == good.text
    assert good.tokens == stored.tokens
    assert good.top_tokens == [[t for t, _ in position] for position in stored.top_logprobs]
    assert good.top_logprobs == [[lp for _, lp in position] for position in stored.top_logprobs]
    assert not by_key[("gsm8k/train/0", "s3")].has_logprobs  # its tokens spell another text
    assert not by_key[("gsm8k/train/0", "s4")].has_logprobs  # the teacher sent none
    assert counts == Counter(
        store_chains_with_logprobs=2, store_chains_logprobs_dropped_tokens_differ_from_text=1, store_chains_without_logprobs=1
    )


def test_max_per_question_and_gold_dedup(teacher_store, gsm8k_train, dev_ids):
    plan, chains, _ = _plan(teacher_store.path, gsm8k_train, dev_ids, gold=True, max_per_question=1, limit=5)
    keys = {q.example.id: [c.key for c in q.chains] for q in plan.questions}
    # train/1's only store chain is GSM8K's own solution, so its gold chain is not added twice.
    assert keys == {"gsm8k/train/0": ["s0", "gold"], "gsm8k/train/1": ["s0"], "gsm8k/train/2": ["gold"],
                    "gsm8k/train/3": ["gold"], "gsm8k/train/4": ["gold"]}  # fmt: skip
    assert [q.example.id for q in plan.questions][:2] == ["gsm8k/train/0", "gsm8k/train/1"]  # store order first
    assert plan.counts["gold_chains_equal_to_store_chain"] == 1
    gold_texts = {qid: c.text for qid, cs in chains for c in cs if c.ref.key == "gold"}
    assert gold_texts["gsm8k/train/3"] == gold_chain(gsm8k_train[3])


def test_a_store_changed_between_passes_is_refused(teacher_store, gsm8k_train, dev_ids):
    with SampleStore.open(teacher_store.path) as store:
        plan = make_plan(gsm8k_train, dev_ids, store, gold=False, limit=None, max_per_question=None)
        with sqlite3.connect(teacher_store.path) as conn:
            conn.execute("DELETE FROM samples WHERE question_id = 'gsm8k/train/1'")
        with pytest.raises(CotspecError, match="changed while the build was reading it"):
            list(iter_chains(plan, store, Counter()))


def test_a_store_of_other_questions_is_refused(tmp_path, gsm8k_train, dev_ids):
    from support.formats_support import teacher_row

    path = tmp_path / "test-set.db"
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions([Example("gsm8k/test/0", "Janet's ducks?", "18"), Example("gsm8k/train/0", "edited text", "72")])
        store.add_many([teacher_row("gsm8k/test/0", 0, "The answer is 18")])
    with SampleStore.open(path) as store, pytest.raises(CotspecError, match="gsm8k/test/0, which is not a GSM8K training question"):
        make_plan(gsm8k_train, dev_ids, store, gold=False, limit=None, max_per_question=None)
    with SampleStore.open(path, writable=True) as store:
        store.add_many([teacher_row("gsm8k/train/0", 0, "The answer is 72")])
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM samples WHERE question_id = 'gsm8k/test/0'")
    with SampleStore.open(path) as store, pytest.raises(CotspecError, match="stored text of gsm8k/train/0 differs"):
        make_plan(gsm8k_train, dev_ids, store, gold=False, limit=None, max_per_question=None)


def test_lone_surrogates_never_reach_arrow(tmp_path, gsm8k_train, dev_ids):
    # JSON from some servers carries half a UTF-16 pair (`"\ud83e"`) as a token; the store keeps it, Arrow cannot.
    from support.formats_support import teacher_row

    path = tmp_path / "surrogates.db"
    bad_candidate = teacher_row("gsm8k/train/0", 0, "The answer is 72")
    bad_candidate.top_logprobs[1][2] = ("\ud83e", -9.0)
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions(gsm8k_train[:2])
        store.add_many([bad_candidate])
    plan, chains, counts = _plan(path, gsm8k_train, dev_ids)
    assert not chains[0][1][0].has_logprobs and counts["store_chains_logprobs_dropped_invalid_unicode"] == 1
