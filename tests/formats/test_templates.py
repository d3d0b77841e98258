"""The four formats' exact strings, against expectations written out from the raw GSM8K file."""

from __future__ import annotations

import pytest

from cotspec.formats import templates
from cotspec.tasks.base import Example
from cotspec.tasks.prompts import zero_shot_answer_only_prompt, zero_shot_cot_prompt

from support.formats_support import raw_solution


def _example(raw_train, line: int) -> Example:
    steps, final = raw_solution(raw_train[line])
    return Example(f"gsm8k/train/{line}", raw_train[line]["question"], final, rationale=steps)


def test_zero_shot_formats_are_the_evaluation_prompts_byte_for_byte(raw_train):
    natalia = _example(raw_train, 0)
    question = raw_train[0]["question"]
    assert templates.render("zero_shot_answer", natalia, [], None) == (f"Q: {question}\nA:", " The answer is 72")
    chain = "Natalia sold 24 clips in May.\nThe answer is 72"
    assert templates.render("zero_shot_cot", natalia, [], chain) == (f"Q: {question}\nLet's think step by step\n", chain)
    # ...and they are what `cotspec eval --mode zero-shot` sends.
    assert templates.render("zero_shot_answer", natalia, [], None)[0] == zero_shot_answer_only_prompt(question)
    assert templates.render("zero_shot_cot", natalia, [], chain)[0] == zero_shot_cot_prompt(question)


def test_in_context_answer_prompt(raw_train):
    target, shots = _example(raw_train, 0), [_example(raw_train, i) for i in (5, 17)]
    prompt, answer = templates.render("in_context_answer", target, shots, None)
    expected = (
        f"Q: {raw_train[5]['question']}\nA: The answer is {raw_solution(raw_train[5])[1]}\n\n"
        f"Q: {raw_train[17]['question']}\nA: The answer is {raw_solution(raw_train[17])[1]}\n\n"
        f"Q: {raw_train[0]['question']}\nA:"
    )
    assert (prompt, answer) == (expected, " The answer is 72")


def test_in_context_cot_prompt_uses_gold_solutions_without_calculator_notes(raw_train):
    target, shots = _example(raw_train, 0), [_example(raw_train, i) for i in (1, 2)]
    chain = "teacher chain\nThe answer is 72"
    prompt, out = templates.render("in_context_cot", target, shots, chain)
    expected = (
        f"Q: {raw_train[1]['question']}\nLet's think step by step\n"
        "Weng earns 12/60 = $0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $10.\nThe answer is 10\n\n"
        f"Q: {raw_train[2]['question']}\nLet's think step by step\n"
        "In the beginning, Betty has only 100 / 2 = $50.\n"
        "Betty's grandparents gave her 15 * 2 = $30.\n"
        "This means, Betty needs 100 - 50 - 30 - 15 = $5 more.\nThe answer is 5\n\n"
        f"Q: {raw_train[0]['question']}\nLet's think step by step\n"
    )
    assert (prompt, out) == (expected, chain)
    assert "<<" not in prompt


def test_gold_chain_collapses_blank_lines_that_would_stop_generation(raw_train):
    # Four GSM8K solutions contain a blank line; math generation stops at "\n\n".
    line = next(i for i, r in enumerate(raw_train) if "\n\n" in r["answer"])
    chain = templates.gold_chain(_example(raw_train, line))
    assert "\n\n" not in chain
    assert chain.endswith(f"\nThe answer is {raw_solution(raw_train[line])[1]}")


def test_formats_refuse_missing_parts(raw_train):
    natalia = _example(raw_train, 0)
    with pytest.raises(ValueError, match="needs a chain"):
        templates.render("in_context_cot", natalia, [natalia], None)
    with pytest.raises(ValueError, match="needs exemplars"):
        templates.render("in_context_answer", natalia, [], None)
