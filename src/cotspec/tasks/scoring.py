"""Answer extraction and scoring: pure functions from model text and gold strings to verdicts.

Math answers are compared as exact rationals (`fractions.Fraction`), so ``5.0``, ``5`` and ``10/2`` agree
and nothing the model wrote is ever evaluated as code. BIG-Bench Hard answers are compared as strings
after light normalization, following the "So the answer is X." convention of its chain-of-thought prompts.
"""

from __future__ import annotations

import re
from fractions import Fraction

_TRIGGER = re.compile(r"the answer is", re.IGNORECASE)

# One number as people write it in a solution: `1,000`, `$5`, `-3`, `0.5`, `.5`, `1/2`, `50%`, `$18.00.`
# It may not touch a letter or digit on either side, so `3rd`, `H2O`, `COVID19`, a version `1.2.3` and
# the parts of a date `12/25/2020` yield nothing rather than a mangled number. A minus sign counts only
# when it does not follow a word character, so `5-3` is 5 and 3. A comma not followed by three digits
# separates numbers: `1,2,3` is three numbers.
_NUMBER = re.compile(
    r"""
    (?<![\w./])
    (?P<neg>[-\u2212])?
    \$?
    (?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)
    (?:/(?P<den>\d+))?
    (?!\w|[./]\d)
    """,
    re.VERBOSE,
)
_SIGNED_PARENS = re.compile(r"-\((?P<inner>[^()]*)\)")  # ASDiv writes one gold as `-(1/3)`


def parse_rational(text: str) -> Fraction | None:
    """The exact value of a string that is one number, else None.

    Accepts thousands separators, a `$` prefix, a `%` suffix, a final full stop, decimals (`.5`),
    fractions (`1/2`) and ASDiv's `-(1/3)`. Anything else (words, two numbers, `1/0`) is None.
    """
    s = text.strip().rstrip(".").strip()
    parens = _SIGNED_PARENS.fullmatch(s)
    if parens:
        inner = parse_rational(parens.group("inner"))
        return None if inner is None else -inner
    s = s.removesuffix("%")
    match = _NUMBER.fullmatch(s)
    if not match:
        return None
    return _value(match)


def _value(match: re.Match[str]) -> Fraction | None:
    value = Fraction(match.group("num").replace(",", ""))
    if match.group("den") is not None:
        den = Fraction(match.group("den"))
        if den == 0:
            return None
        value /= den
    return -value if match.group("neg") else value


def format_number(value: Fraction, *, as_fraction: bool = False) -> str:
    """Canonical text of a rational: `1000`, `-3`, `0.5`; `1/3` (or `1/2` with `as_fraction`).

    Integers never carry a decimal point (`5.0` -> `5`); terminating decimals are written in full without
    trailing zeros; anything else, or anything asked for `as_fraction`, is the reduced `p/q`.
    """
    if value.denominator == 1:
        return str(value.numerator)
    decimal = None if as_fraction else _terminating_decimal(value)
    return decimal if decimal is not None else f"{value.numerator}/{value.denominator}"


def _terminating_decimal(value: Fraction) -> str | None:
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return None
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator  # exact: 10**places is a multiple of den
    whole, frac = divmod(scaled, 10**places)
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{frac:0{places}d}".rstrip("0")


def canonical_number(text: str) -> str | None:
    """`parse_rational` then `format_number`, keeping the fraction form when the text was a fraction."""
    value = parse_rational(text)
    if value is None:
        return None
    return format_number(value, as_fraction="/" in text)


def number_from_float(value: float | int) -> str:
    """Canonical text of a JSON number gold answer: `39.0` -> `39`, `0.1` -> `0.1` (its shortest repr)."""
    return format_number(Fraction(repr(value)) if isinstance(value, float) else Fraction(value))


def _numbers(text: str) -> list[tuple[str, Fraction]]:
    """Every number in `text` with its canonical form, in order; `1/0` and the like are skipped."""
    found = []
    for match in _NUMBER.finditer(text):
        value = _value(match)
        if value is not None:
            found.append((format_number(value, as_fraction=match.group("den") is not None), value))
    return found


def extract_math_answer(text: str) -> str | None:
    """The number a solution commits to, as canonical text (`"1000"`, `"-3"`, `"0.5"`, `"1/2"`), or None.

    The first number after the last "The answer is" (any case) wins, as in the few-shot exemplars; if
    there is no such phrase, or no number after it, the last number in the text.
    """
    triggers = list(_TRIGGER.finditer(text))
    if triggers:
        after = _numbers(text[triggers[-1].end() :])
        if after:
            return after[0][0]
    everywhere = _numbers(text)
    return everywhere[-1][0] if everywhere else None


def math_is_correct(extracted: str | None, gold: str) -> bool:
    """Exact rational equality of the extracted answer and the gold (`"5.0"` == `"5"`, `"0.5"` == `"1/2"`)."""
    if extracted is None:
        return False
    predicted, expected = parse_rational(extracted), parse_rational(gold)
    return predicted is not None and expected is not None and predicted == expected


# Markdown emphasis/code and quotes that models wrap answers in; stripped only in matching pairs.
_WRAPPERS = (("**", "**"), ("__", "__"), ("*", "*"), ("_", "_"), ("`", "`"), ('"', '"'), ("'", "'"),
             ("\u201c", "\u201d"), ("\u2018", "\u2019"))


def extract_bbh_answer(text: str) -> str | None:
    """The text after the last "the answer is" (any case) to the end of its line, cleaned, or None.

    Cleaning removes a leading colon, trailing full stops and wrapping quotes or markdown, repeatedly:
    `So the answer is **"(B)"**.` -> `(B)`.
    """
    triggers = list(_TRIGGER.finditer(text))
    if not triggers:
        return None
    answer = text[triggers[-1].end() :].split("\n", 1)[0].strip().removeprefix(":")
    previous = None
    while answer != previous:
        previous = answer
        answer = answer.strip().rstrip(".").strip()
        for left, right in _WRAPPERS:
            if len(answer) >= len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
                answer = answer[len(left) : len(answer) - len(right)]
                break
    return answer or None


_OPTION = re.compile(r"\(([A-Za-z])\)")
_OPTION_LOOSE = re.compile(r"\(?([A-Za-z])\)?")


def _normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def math_vote_key(answer: str) -> str:
    """Answers that `math_is_correct` equates share a key: `"0.5"` and `"1/2"` vote together."""
    value = parse_rational(answer)
    return answer if value is None else str(value)


def bbh_vote_key(answer: str) -> str:
    """Answers that `bbh_is_correct` equates share a key: `(B)`, `B` and `b` vote together."""
    option = _OPTION_LOOSE.fullmatch(answer.strip())
    return f"({option.group(1).upper()})" if option else _normalize(answer)


def bbh_is_correct(extracted: str | None, target: str) -> bool:
    """Exact match after collapsing whitespace and case; `B` counts as `(B)` when the target is an option."""
    if extracted is None:
        return False
    option = _OPTION.fullmatch(target.strip())
    if option:
        said = _OPTION_LOOSE.fullmatch(extracted.strip())
        return said is not None and said.group(1).casefold() == option.group(1).casefold()
    return _normalize(extracted) == _normalize(target)
