"""Prompt builders: full strings compared with ones cut independently out of the exemplar files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotspec.errors import CotspecError
from cotspec.tasks.base import Example, Mode, PromptSpec
from cotspec.tasks.bbh import BBH_TASK_NAMES, load_bbh
from cotspec.tasks.math import load_gsm8k
from cotspec.tasks.prompts import (
    BBH_STOP,
    MATH_STOP,
    bbh_prompter,
    load_math_exemplars,
    math_prompter,
    parse_bbh_prompt,
    zero_shot_answer_only_prompt,
    zero_shot_cot_prompt,
)

JANET = "Janet’s ducks lay 16 eggs per day."


@pytest.fixture(scope="module")
def janet(data_dir: Path) -> Example:
    example = load_gsm8k(data_dir, "test")[0]
    assert example.question.startswith(JANET)
    return example


def _text(data_dir: Path, relpath: str) -> str:
    return (data_dir / relpath).read_text(encoding="utf-8")


def test_few_shot_cot_is_the_papers_4_shot_original(data_dir: Path, janet: Example) -> None:
    original = _text(data_dir, "gsm8k_prompts/prompt_original.txt")
    # The first four blocks end right before the fifth "Question:" (Shawn's toys), blank line included.
    four_blocks = original[: original.index("Question: Shawn has five toys.")]
    assert four_blocks.count("Question: ") == 4 and four_blocks.endswith("The answer is 8.\n\n")
    expected = four_blocks + "Question: " + janet.question + "\nLet's think step by step\n"
    assert math_prompter(data_dir, PromptSpec())(janet) == expected


def test_few_shot_cot_complex_8_is_the_whole_file(data_dir: Path, janet: Example) -> None:
    complex_ = _text(data_dir, "gsm8k_prompts/prompt_complex.txt")
    prompt = math_prompter(data_dir, PromptSpec(exemplars="complex", shots=8))(janet)
    assert prompt == complex_ + "\nQuestion: " + janet.question + "\nLet's think step by step\n"


def test_few_shot_answer_only_drops_reasoning_lines(data_dir: Path, janet: Example) -> None:
    original = _text(data_dir, "gsm8k_prompts/prompt_original.txt")
    blocks = original.split("\n\n")[:2]
    expected = "".join(f"{b.splitlines()[0]}\n{b.splitlines()[-1]}\n\n" for b in blocks)
    assert expected.startswith(
        "Question: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
        "are done, there will be 21 trees. How many trees did the grove workers plant today?\nThe answer is 6.\n\n"
    )
    expected += "Question: " + janet.question + "\n"
    assert math_prompter(data_dir, PromptSpec(cot=False, shots=2))(janet) == expected


def test_zero_shot_templates(data_dir: Path, janet: Example) -> None:
    cot = math_prompter(data_dir, PromptSpec(mode=Mode.ZERO_SHOT))(janet)
    answer_only = math_prompter(data_dir, PromptSpec(mode=Mode.ZERO_SHOT, cot=False))(janet)
    assert cot == "Q: " + janet.question + "\nLet's think step by step\n" == zero_shot_cot_prompt(janet.question)
    assert answer_only == "Q: " + janet.question + "\nA:" == zero_shot_answer_only_prompt(janet.question)


def test_math_exemplars_parse(data_dir: Path) -> None:
    original = load_math_exemplars(data_dir, "original")
    assert len(original) == 8 and len(load_math_exemplars(data_dir, "complex")) == 8
    assert original[0].answer_line == "The answer is 6."
    assert original[0].question_lines.startswith("Question: There are 15 trees")
    # A model that imitates an exemplar is not cut off early by the math stop sequences.
    for exemplar in original + load_math_exemplars(data_dir, "complex"):
        continuation = exemplar.text.split("Let's think step by step\n", 1)[1]
        assert not any(stop in continuation for stop in MATH_STOP)


def test_user_exemplar_file_and_errors(data_dir: Path, tmp_path: Path, janet: Example) -> None:
    good = tmp_path / "mine.txt"
    good.write_text("Question: 1+1?\nLet's think step by step\n1+1=2.\nThe answer is 2.\n", encoding="utf-8")
    prompt = math_prompter(data_dir, PromptSpec(exemplars=str(good), shots=1))(janet)
    assert prompt == "Question: 1+1?\nLet's think step by step\n1+1=2.\nThe answer is 2.\n\nQuestion: " + janet.question + "\nLet's think step by step\n"

    bad = tmp_path / "bad.txt"
    bad.write_text("Question: a?\nLet's think step by step\nThe answer is 1.\n\nQuestion: b?\nLet's think step by step\nSo 2.\n")
    with pytest.raises(CotspecError, match=rf"^{bad}:5: exemplar 2 has no 'The answer is \.\.\.' line$"):
        math_prompter(data_dir, PromptSpec(exemplars=str(bad)))
    with pytest.raises(CotspecError, match="neither a known name \\(original, complex\\) nor an existing file"):
        math_prompter(data_dir, PromptSpec(exemplars="hardest"))
    with pytest.raises(CotspecError, match="^shots: 9 asks for more exemplars than original has \\(8\\)"):
        math_prompter(data_dir, PromptSpec(shots=9))
    with pytest.raises(CotspecError, match="^shots: must be >= 1"):
        math_prompter(data_dir, PromptSpec(shots=0))
    with pytest.raises(CotspecError, match="^shots: applies to few-shot prompts only"):
        math_prompter(data_dir, PromptSpec(mode=Mode.ZERO_SHOT, shots=4))


@pytest.fixture(scope="module")
def date_example(data_dir: Path) -> Example:
    return load_bbh("date_understanding", data_dir)[0]


def test_bbh_few_shot_is_the_file_after_the_canary(data_dir: Path, date_example: Example) -> None:
    text = _text(data_dir, "bbh/cot-prompts/date_understanding.txt")
    lines = text.split("\n")
    assert lines[1] == "-----"
    prompt_body = "\n".join(lines[2:])
    expected = prompt_body + "\n\nQ: " + date_example.question + "\nA: Let's think step by step."
    assert bbh_prompter("date_understanding", data_dir, PromptSpec())(date_example) == expected
    assert "canary" not in expected


def test_bbh_zero_shot_is_the_description(data_dir: Path, date_example: Example) -> None:
    description = _text(data_dir, "bbh/cot-prompts/date_understanding.txt").split("\n")[2]
    assert description == "Infer the date from context."
    expected = description + "\n\nQ: " + date_example.question + "\nA: Let's think step by step."
    assert bbh_prompter("date_understanding", data_dir, PromptSpec(mode=Mode.ZERO_SHOT))(date_example) == expected


def test_bbh_zero_shot_keeps_a_multi_paragraph_description(data_dir: Path) -> None:
    # snarks.txt is the one file whose description runs over two paragraphs (it defines sarcasm).
    text = _text(data_dir, "bbh/cot-prompts/snarks.txt")
    preamble = text.split("-----\n", 1)[1].split("\n\nQ: ", 1)[0]
    assert preamble.count("\n\n") == 1
    example = Example("x", "Which statement is sarcastic?", "(A)")
    prompt = bbh_prompter("snarks", data_dir, PromptSpec(mode=Mode.ZERO_SHOT))(example)
    assert prompt == preamble + "\n\nQ: Which statement is sarcastic?\nA: Let's think step by step."


def test_bbh_answer_only_uses_the_exemplars_final_sentences(data_dir: Path) -> None:
    example = Example("x", 'Is the following sentence plausible? "Elias Lindholm beat the buzzer."', "no")
    prompt = bbh_prompter("sports_understanding", data_dir, PromptSpec(cot=False))(example)
    assert prompt == (
        "Determine whether an artificially constructed sentence relating to sports is plausible or not.\n\n"
        'Q: Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western Conference Finals."\n'
        "A: So the answer is yes.\n\n"
        'Q: Is the following sentence plausible? "Santi Cazorla scored a touchdown."\n'
        "A: So the answer is no.\n\n"
        'Q: Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."\n'
        "A: So the answer is yes.\n\n"
        'Q: Is the following sentence plausible? "Elias Lindholm beat the buzzer."\n'
        "A:"
    )


def test_bbh_prompt_files_all_parse_and_round_trip(data_dir: Path) -> None:
    for task in BBH_TASK_NAMES:
        text = _text(data_dir, f"bbh/cot-prompts/{task}.txt")
        prompt = parse_bbh_prompt(text, task)
        assert len(prompt.exemplars) == 3
        assert prompt.text(3) == text.split("-----\n", 1)[1]
        # Exemplar answers never contain a stop sequence, so imitating them is not cut short.
        for exemplar in prompt.exemplars:
            answer = exemplar.split("\nA:", 1)[1]
            assert not any(stop in answer for stop in BBH_STOP), task


def test_bbh_prompt_errors(data_dir: Path, date_example: Example, tmp_path: Path) -> None:
    with pytest.raises(CotspecError, match="zero-shot answer-only prompts are not supported for bbh:date_understanding"):
        bbh_prompter("date_understanding", data_dir, PromptSpec(mode=Mode.ZERO_SHOT, cot=False))
    with pytest.raises(CotspecError, match="^exemplars: applies to math tasks"):
        bbh_prompter("date_understanding", data_dir, PromptSpec(exemplars="complex"))
    with pytest.raises(CotspecError, match="more exemplars than bbh:date_understanding has \\(3\\)"):
        bbh_prompter("date_understanding", data_dir, PromptSpec(shots=4))
    one_shot = bbh_prompter("date_understanding", data_dir, PromptSpec(shots=1))(date_example)
    assert one_shot.count("\nA: Let's think step by step.") == 2
    with pytest.raises(CotspecError, match="exemplar 1 has no 'A: ... So the answer is X.' answer"):
        parse_bbh_prompt("canary\n-----\nDescribe.\n\nQ: what?\nA: Let's think step by step. It is 4.", "bad.txt")
