"""The banded indel DP that aligns two byte streams where tokenizers disagree on the text."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cotspec.align import match_bytes


def lcs_length(a: bytes, b: bytes) -> int:
    """Textbook O(n m) longest common subsequence, the reference."""
    row = [0] * (len(b) + 1)
    for x in a:
        previous_diagonal = 0
        for j, y in enumerate(b, start=1):
            previous_diagonal, row[j] = row[j], (previous_diagonal + 1 if x == y else max(row[j], row[j - 1]))
    return row[-1]


def as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)


def check_matching(a: bytes, b: bytes, matched: np.ndarray) -> None:
    assert matched.shape == (len(b),)
    pairs = [(int(i), j) for j, i in enumerate(matched) if i >= 0]
    assert all(a[i] == b[j] for i, j in pairs)  # only equal bytes are matched
    teacher_side = [i for i, _ in pairs]
    assert teacher_side == sorted(set(teacher_side))  # monotonic and one-to-one


# Few distinct bytes, so texts share a lot and differ a lot: the hard case for a banded DP.
small_texts = st.binary(max_size=40).map(lambda raw: bytes(b % 4 + 97 for b in raw))


@settings(max_examples=300, deadline=None)
@given(small_texts, small_texts)
def test_matching_is_a_longest_common_subsequence(a, b):
    matched = match_bytes(as_array(a), as_array(b))
    check_matching(a, b, matched)
    assert int((matched >= 0).sum()) == lcs_length(a, b)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.lists(st.tuples(st.integers(0, 299), st.binary(max_size=3)), max_size=5))
def test_few_edits_in_long_texts(text, edits):
    """Long equal stretches with a few edits: what lossy tokenizers produce. The band must grow to fit."""
    edited = bytearray(text)
    for at, insert in edits:
        at %= len(edited) + 1
        edited[at : at + 1] = insert  # replace one byte by 0-3 bytes
    matched = match_bytes(as_array(text), as_array(bytes(edited)))
    check_matching(text, bytes(edited), matched)
    assert int((matched >= 0).sum()) == lcs_length(text, bytes(edited))


def test_equal_texts_match_position_by_position():
    text = b"48/2=24 clips"
    assert match_bytes(as_array(text), as_array(text)).tolist() == list(range(len(text)))


def test_lost_byte_leaves_the_rest_matched():
    # A lossy student lost "{" (its tokenizer has no such token): everything else still lines up.
    matched = match_bytes(as_array(b"a{b}c"), as_array(b"ab}c"))
    assert matched.tolist() == [0, 2, 3, 4]


def test_empty_sides():
    assert match_bytes(as_array(b""), as_array(b"abc")).tolist() == [-1, -1, -1]
    assert match_bytes(as_array(b"abc"), as_array(b"")).tolist() == []
