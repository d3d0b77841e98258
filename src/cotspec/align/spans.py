"""Which teacher token covers exactly the text of each student token.

Both tokenizations cover the same text, so no DP over token strings is needed to pair them: lay each
side's token bytes end to end with whitespace removed, and every token gets a span ``[start, end)`` on
that whitespace-free stream. A student token pairs with the teacher token that has the same non-empty
span. Tokens that are only whitespace (``"\\n"``, ``" "``) have empty spans at an offset; the r-th such
student token at an offset pairs with the r-th teacher one there when both are the same bytes.

When the two streams differ (a lossy student tokenizer, a teacher that returned ``�``), the student
spans are first carried onto the teacher stream through a character alignment (`charmap.match_bytes`);
a student token keeps its place only where all its bytes matched consecutive teacher bytes.

Everything is a merge over tokens in order, so it is O(N + T + bytes) outside the DP, and monotonic by
construction. The loops are numba kernels (`_numba`).
"""

from __future__ import annotations

import numpy as np

from ._numba import jit
from .charmap import match_bytes

WHITESPACE = b" \t\n\r\x0b\x0c"
"""Bytes ignored when comparing texts (ASCII whitespace, as ``bytes.split()`` sees it)."""

_IS_WHITESPACE = np.zeros(256, np.bool_)
_IS_WHITESPACE[list(WHITESPACE)] = True


def pair_tokens(t_pieces: list[bytes], s_pieces: list[bytes]) -> np.ndarray:
    """int32[T]: for each student token, the index of the teacher token covering the same text, or -1.

    t_pieces: [N] teacher tokens as bytes of text; s_pieces: [T] student tokens likewise (``b""`` for
    special tokens, which never pair). Paired indices increase along the student sequence.
    """
    t_lengths = np.fromiter(map(len, t_pieces), np.int64, len(t_pieces))
    s_lengths = np.fromiter(map(len, s_pieces), np.int64, len(s_pieces))
    t_bytes = np.frombuffer(b"".join(t_pieces), np.uint8)
    s_bytes = np.frombuffer(b"".join(s_pieces), np.uint8)
    t_stream, t_start, t_end = _strip_spans(t_bytes, t_lengths, _IS_WHITESPACE)
    s_stream, s_start, s_end = _strip_spans(s_bytes, s_lengths, _IS_WHITESPACE)
    if t_stream.shape[0] == s_stream.shape[0] and np.array_equal(t_stream, s_stream):
        clean = np.ones(len(s_pieces), np.bool_)
    else:
        matched = match_bytes(t_stream, s_stream)
        s_start, s_end, clean = _carry_spans(matched, s_start, s_end, t_stream.shape[0])
    teacher_index = np.empty(len(s_pieces), np.int32)
    _merge(t_start, t_end, t_bytes, t_lengths, s_start, s_end, clean, s_bytes, s_lengths, teacher_index)
    return teacher_index


@jit
def _strip_spans(raw, lengths, is_whitespace):  # pragma: no cover - compiled by numba
    """(stream uint8[L], start int64[n], end int64[n]): tokens' bytes without whitespace, and where
    each token lies in that stream."""
    n = lengths.shape[0]
    stream = np.empty(raw.shape[0], np.uint8)
    start = np.empty(n, np.int64)
    end = np.empty(n, np.int64)
    pos = 0
    kept = 0
    for t in range(n):
        start[t] = kept
        for x in range(pos, pos + lengths[t]):
            byte = raw[x]
            if not is_whitespace[byte]:
                stream[kept] = byte
                kept += 1
        pos += lengths[t]
        end[t] = kept
    return stream[:kept], start, end


@jit
def _carry_spans(matched, s_start, s_end, n_teacher):  # pragma: no cover - compiled by numba
    """Student spans in teacher-stream coordinates, and whether each token carried over cleanly.

    matched: int64[L_s], the teacher byte each student byte matched, or -1. A token with text is clean
    when its bytes matched consecutive teacher bytes; a whitespace-only token is clean when the byte
    after it (before it, at the very end) matched, which fixes its offset.
    """
    n = s_start.shape[0]
    length = matched.shape[0]
    start = np.full(n, -1, np.int64)
    end = np.full(n, -1, np.int64)
    clean = np.zeros(n, np.bool_)
    for j in range(n):
        a = s_start[j]
        b = s_end[j]
        if b > a:
            ok = matched[a] >= 0
            for x in range(a + 1, b):
                if matched[x] != matched[x - 1] + 1:
                    ok = False
                    break
            if ok:
                start[j] = matched[a]
                end[j] = matched[b - 1] + 1
                clean[j] = True
        elif a < length:
            if matched[a] >= 0:
                start[j] = matched[a]
                end[j] = matched[a]
                clean[j] = True
        elif length > 0:
            if matched[length - 1] >= 0:
                start[j] = matched[length - 1] + 1
                end[j] = start[j]
                clean[j] = True
        elif n_teacher == 0:
            start[j] = 0
            end[j] = 0
            clean[j] = True
    return start, end, clean


@jit
def _merge(
    t_start, t_end, t_bytes, t_lengths, s_start, s_end, clean, s_bytes, s_lengths, out
):  # pragma: no cover - compiled by numba
    """Fill out[j] with the teacher token on the same span as student token j, or -1."""
    n_t = t_start.shape[0]
    t_offset = np.empty(n_t + 1, np.int64)
    t_offset[0] = 0
    for i in range(n_t):
        t_offset[i + 1] = t_offset[i] + t_lengths[i]
    s_pos = 0
    first = 0  # first teacher token starting at or after the current offset
    run_offset = -1  # offset of the current run of whitespace-only student tokens
    rank = 0
    for j in range(s_start.shape[0]):
        out[j] = -1
        s_here = s_pos
        s_pos += s_lengths[j]
        if not clean[j]:
            continue
        a = s_start[j]
        b = s_end[j]
        while first < n_t and t_start[first] < a:
            first += 1
        if b > a:
            q = first
            while q < n_t and t_start[q] == a and t_end[q] == a:  # teacher whitespace before it
                q += 1
            if q < n_t and t_start[q] == a and t_end[q] == b:
                out[j] = q
            continue
        if a != run_offset:
            run_offset = a
            rank = 0
        q = first + rank
        rank += 1
        if q >= n_t or t_start[q] != a or t_end[q] != a:
            continue
        length = s_lengths[j]
        if length == 0 or t_lengths[q] != length:  # specials spell b"" and never pair
            continue
        same = True
        for x in range(length):
            if t_bytes[t_offset[q] + x] != s_bytes[s_here + x]:
                same = False
                break
        if same:
            out[j] = q
