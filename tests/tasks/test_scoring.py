"""Answer extraction and scoring, on edge cases taken from the real datasets and from model-style text."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotspec.tasks.scoring import (
    bbh_is_correct,
    canonical_number,
    extract_bbh_answer,
    extract_math_answer,
    format_number,
    math_is_correct,
    number_from_float,
    parse_rational,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The exemplars' own closing lines (prompt_original.txt ends "The answer is 8.", complex "52").
        ("23 - 15 is 8.\nThe answer is 8.", "8"),
        ("520/1000 * 100 = 52\nThe answer is 52", "52"),
        # GSM8K golds with thousands separators (test lines 146, 201) and a negative gold (test 489).
        ("So she pays 2,125 in total.\nThe answer is 2,125.", "2125"),
        ("The answer is $114,200.", "114200"),
        ("The temperature drops to -10 degrees.\nThe answer is -10.", "-10"),
        # GSM8K test line 1 after calculator notes are removed: "$<<9*2=18>>18" -> "$18".
        ("She makes 9 * 2 = $18 every day at the farmer’s market.", "18"),
        ("The answer is $18.00.", "18"),
        ("The answer is 18 dollars.", "18"),
        ("The answer is 50%.", "50"),
        ("The answer is 0.5", "0.5"),
        ("The answer is .5 liters", "0.5"),
        ("The answer is 1/2.", "1/2"),
        ("The answer is 10/4 cups", "5/2"),
        ("The answer is 5.0", "5"),
        ("The answer is \u22123.", "-3"),  # a typographic minus sign
        ("The answer is -$5.", "-5"),
        # The LAST trigger wins, and the first number after it.
        ("The answer is 3.\nWait, recount: 4 + 2 = 6.\nThe answer is 6.", "6"),
        ("the ANSWER is: 7 apples, not 8", "7"),
        # No trigger, or no number after it: the last number in the text.
        ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether", "72"),
        ("She has 5 apples. The answer is five.", "5"),
        # Numbers inside words are not numbers; ranges and differences split at the hyphen.
        ("The answer is 12 for the COVID19 ward on the 3rd floor", "12"),
        ("H2O costs 4 dollars", "4"),
        ("5-3=2", "2"),
        ("a date 12/25/2020 then 7", "7"),
        ("version 1.2.3", None),
        ("1/0", None),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_math_answer(text: str, expected: str | None) -> None:
    assert extract_math_answer(text) == expected


@pytest.mark.parametrize(
    ("gold", "value"),
    [
        ("1,080", Fraction(1080)),  # GSM8K train record 345: thousands separator
        ("-7", Fraction(-7)),  # GSM8K train line 5715
        ("51.0", Fraction(51)),  # SVAMP chal-1 Answer as printed by Python
        ("39.0", Fraction(39)),  # MultiArith lSolutions[0] of line 0
        ("5/2", Fraction(5, 2)),  # ASDiv nluds-1312
        ("-(1/3)", Fraction(-1, 3)),  # ASDiv nluds-1331
        ("3.333", Fraction(3333, 1000)),  # an ASDiv-A decimal gold
        ("$5", Fraction(5)),
        ("50%", Fraction(50)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("1/0", None),
        ("9 (apples)", None),  # units are the loader's job (asdiv_gold), not parse_rational's
        ("Yes", None),
        ("3:30 p.m.", None),  # an ASDiv answer that is not a number
        ("1 2", None),
        ("", None),
    ],
)
def test_parse_rational(gold: str, value: Fraction | None) -> None:
    assert parse_rational(gold) == value


@pytest.mark.parametrize(
    ("extracted", "gold", "correct"),
    [
        ("5", "5.0", True),
        ("0.5", "1/2", True),
        ("1000", "1,000", True),
        ("-1/3", "-(1/3)", True),
        ("0.333", "-(1/3)", False),
        ("2125", "2125", True),
        ("2124", "2125", False),
        (None, "18", False),
        ("18", "eighteen", False),
    ],
)
def test_math_is_correct(extracted: str | None, gold: str, correct: bool) -> None:
    assert math_is_correct(extracted, gold) is correct


def test_canonical_forms() -> None:
    assert [canonical_number(s) for s in ("1,000", "5.0", ".50", "-0", "4/2", "10/4", "1e3")] == [
        "1000", "5", "0.5", "0", "2", "5/2", None,
    ]
    assert [number_from_float(x) for x in (51.0, 39.0, 0.1, 2.5, 7)] == ["51", "39", "0.1", "2.5", "7"]
    assert format_number(Fraction(1, 3)) == "1/3"  # no terminating decimal exists
    assert format_number(Fraction(-1, 8)) == "-0.125"
    assert format_number(Fraction(1, 2), as_fraction=True) == "1/2"


@given(st.fractions(max_denominator=10**6), st.booleans())
def test_format_then_parse_is_exact(value: Fraction, as_fraction: bool) -> None:
    text = format_number(value, as_fraction=as_fraction)
    assert parse_rational(text) == value
    assert canonical_number(text) == text  # canonical text is a fixed point


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["", "$"]), st.sampled_from(["", ".", " dollars."]))
def test_extracts_formatted_integers(n: int, currency: str, tail: str) -> None:
    sign, magnitude = ("-" if n < 0 else ""), abs(n)
    text = f"First 3 + 4 = 7.\nThe answer is {sign}{currency}{magnitude:,}{tail}"
    assert extract_math_answer(text) == str(n)


@given(st.decimals(min_value=-10**6, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_extracts_decimals_exactly(value) -> None:
    assert parse_rational(extract_math_answer(f"so the answer is {value}.")) == Fraction(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The closing sentences of the real BBH CoT exemplars.
        ("... = not True = False. So the answer is False.", "False"),
        ("... that is 01/03/1963. So the answer is (B).", "(B)"),
        ('... the final answer is "}", "]", ">". So the answer is } ] >.', "} ] >"),
        ("... -163 - 56 = -219. So the answer is -219.", "-219"),
        ("Hence ... So the answer is arson aspect census mugho newt parthia seismography.",
         "arson aspect census mugho newt parthia seismography"),
        # Model-style decorations.
        ('So the answer is **"(B)"**.', "(B)"),
        ("So the answer is: `yes`", "yes"),
        ("The answer is (A).\nQ: next question", "(A)"),
        ("the answer is (A). Actually, the answer is (C).", "(C)"),
        ("I think it is (B).", None),
        ("So the answer is .", None),
    ],
)
def test_extract_bbh_answer(text: str, expected: str | None) -> None:
    assert extract_bbh_answer(text) == expected


@pytest.mark.parametrize(
    ("extracted", "target", "correct"),
    [
        ("(B)", "(B)", True),
        ("B", "(B)", True),
        ("b", "(B)", True),
        ("(C)", "(B)", False),
        ("(B) Hamlet", "(B)", False),
        ("yes", "Yes", True),  # causal_judgement targets are capitalized, sports_understanding's are not
        ("valid", "invalid", False),
        ("]  ]", "] ]", True),  # dyck_languages: whitespace collapsed
        ("B", "B", True),
        ("(B)", "B", False),  # the letter equivalence only applies when the target is an option
        ("-219", "-219", True),
        (None, "True", False),
    ],
)
def test_bbh_is_correct(extracted: str | None, target: str, correct: bool) -> None:
    assert bbh_is_correct(extracted, target) is correct
