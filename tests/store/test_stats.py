"""Store statistics against numbers computed directly from a hand-built store."""

from __future__ import annotations

from math import comb

import pytest

from cotspec.store import SampleStore, pass_at_k
from support.sample_rows import examples, make_row, run_config


@pytest.mark.parametrize("n", [1, 2, 5, 40, 200])
def test_pass_at_k_matches_the_binomial_formula(n):
    for c in range(n + 1):
        for k in sorted({1, min(2, n), n // 2 or 1, n}):
            direct = 1 - comb(n - c, k) / comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(direct, abs=1e-12), (n, c, k)


def test_pass_at_k_edges():
    assert pass_at_k(40, 0, 40) == 0.0
    assert pass_at_k(40, 1, 40) == 1.0
    assert pass_at_k(40, 10, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_stats_of_a_hand_built_store(tmp_path):
    # question -> list of (text, correct, has logprobs); question 3 is only half sampled.
    plan = {
        0: [("a", True, True), ("a", True, True), ("b", False, True), ("c", True, True)],
        1: [("x", False, True), ("y", False, False), ("x", False, True), ("z", False, True)],
        2: [("p", True, True), ("q", True, True), ("r", True, True), ("s", True, False)],
        3: [("m", True, True), ("n", False, True)],
    }
    with SampleStore.open(tmp_path / "run.db", writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(6))  # questions 4 and 5 have no samples
        rows = []
        for q, chains in plan.items():
            for i, (text, correct, lp) in enumerate(chains):
                row = make_row(f"gsm8k/train/{q}", i, run_id=run_id, text=text, correct=correct, logprobs=lp)
                row.finish_reason = "length" if (q, i) == (1, 3) else "stop"
                rows.append(row)
        store.add_many(rows)
        stats = store.stats()

    correct = {q: sum(c for _, c, _ in chains) for q, chains in plan.items()}
    samples = {q: len(chains) for q, chains in plan.items()}
    assert (stats.questions, stats.samples, stats.correct) == (4, 14, 8)
    assert stats.yield_mean == pytest.approx(sum(correct.values()) / 4)
    assert (stats.yield_min, stats.yield_max) == (0, 4)
    assert stats.share_with_correct == pytest.approx(3 / 4)
    assert stats.pass_at_1 == pytest.approx(sum(correct[q] / samples[q] for q in plan) / 4)
    # k is the largest per-question count (4); question 3 has only 2 chains and is left out of pass@4.
    assert (stats.k, stats.questions_at_k) == (4, 3)
    direct = [1 - comb(samples[q] - correct[q], 4) / comb(samples[q], 4) for q in (0, 1, 2)]
    assert stats.pass_at_k == pytest.approx(sum(direct) / 3)
    assert stats.distinct == 3 + 3 + 4 + 2
    assert stats.distinct_correct == 2 + 0 + 4 + 1
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in rows)
    assert stats.generated_tokens == sum(r.generated_tokens for r in rows)
    assert stats.kept_tokens == sum(r.completion_tokens for r in rows)
    assert stats.without_logprobs == 2
    assert stats.finish_reasons == {"stop": 13, "length": 1}


def test_stats_of_an_empty_store(tmp_path):
    with SampleStore.open(tmp_path / "run.db", writable=True) as store:
        stats = store.stats()
    assert (stats.questions, stats.samples, stats.pass_at_k, stats.without_logprobs) == (0, 0, 0.0, 0)
