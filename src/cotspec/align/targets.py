"""Teacher top-k log-probs carried over to the student's tokenization of the same chain.

The teacher wrote a chain as tokens of its own tokenizer and, at every position, returned its k most
likely tokens with log-probs. The student sees the same text through another tokenizer. For each student
position we emit either

* a **soft target** — the teacher's top-k, each candidate turned into the student token id that spells
  the same text — where exactly one teacher token covers exactly the same text as the student token
  (whitespace ignored), or
* a **one-hot target** on the student's own token everywhere else.

How positions are paired (`spans`): both tokenizations cover the same text, so instead of a DP over
token strings (Fu et al. 2023 ran DTW on edit distance between Codex and Flan-T5 tokens) we align by
character spans on the text with whitespace removed, and fall back to a character DP only where the two
texts differ. When the teacher's tokens are exactly the student's, the identity path skips all of it.

Whitespace markers. A teacher token ``" the"`` may face a student token ``"the"`` (the student split the
space off, or WordPiece/SentencePiece put it elsewhere). The teacher's candidates then carry the
teacher's whitespace, so a candidate is re-dressed with the student's: ``" a"`` -> ``"a"``. Candidates
whose whitespace differs from the teacher's own token (``"\\n"`` at a ``" the"`` position) predict a
different text layout and are dropped there. Where both tokens have the same whitespace, candidates map
verbatim.

A candidate maps to the student token that spells exactly its bytes (`Vocab.ids_by_bytes`); the
student's normalizer is not applied, so a lowercasing student drops the teacher's ``"The"`` rather than
folding it into ``"the"``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, compress
from typing import Mapping, Sequence

import numpy as np

from ..constants import PAD_ID
from .pieces import TokenStyle, Vocab, _Memo, piece_decoder
from .spans import WHITESPACE, pair_tokens


@dataclass(frozen=True)
class AlignedTargets:
    """Per student position, what the student is trained towards. Arrays, ready for a collator.

    Every row is a distribution over student ids given as (id, log-prob) pairs: a soft row holds the
    teacher's candidates (padding id -1, log-prob -inf), a one-hot row holds the student's own token with
    log-prob 0 in slot 0. So a KD loss can run on every row as is, and a one-hot row makes it plain
    cross-entropy; `soft` says which rows carry teacher knowledge.
    """

    student_ids: np.ndarray
    """int32[T]: the student's tokens (the labels)."""
    cand_ids: np.ndarray
    """int32[T, k]: candidate student ids, most likely first; -1 pads."""
    cand_logprobs: np.ndarray
    """float32[T, k]: teacher log-probs of the candidates; -inf pads. Not renormalized."""
    soft: np.ndarray
    """bool[T]: the row holds the teacher's top-k (else it is one-hot on `student_ids`)."""
    teacher_index: np.ndarray
    """int32[T]: the teacher position a soft row came from, -1 for one-hot rows. Increasing over soft
    rows."""

    @property
    def coverage(self) -> float:
        """Share of student positions with a soft target."""
        return float(self.soft.mean()) if self.soft.size else 0.0

    def __len__(self) -> int:
        return int(self.student_ids.shape[0])


def align_chain(
    teacher_tokens: Sequence[str],
    teacher_top_tokens: Sequence[Sequence[str]],
    teacher_top_logprobs: Sequence[Sequence[float]],
    student_ids: Sequence[int] | np.ndarray,
    student_vocab: Vocab,
    *,
    k: int,
    teacher_style: TokenStyle = TokenStyle.TEXT,
) -> AlignedTargets:
    """Align one teacher chain to the student's tokens of the same text.

    The teacher arguments are the training data's columns of the same names (`cotspec.formats.rows`).
    teacher_tokens: [N] token strings in ``teacher_style``; they concatenate to the chain's text.
    teacher_top_tokens: [N][<=k'] candidate token strings per position, most likely first; candidates
        past ``k`` are dropped.
    teacher_top_logprobs: [N][<=k'] their log-probs.
    student_ids: [T] the student tokenizer's ids for the same text (special tokens allowed: one-hot).
    student_vocab: `Vocab.from_tokenizer(student_tokenizer)`.
    k: width of the candidate arrays.
    """
    if not len(teacher_tokens) == len(teacher_top_tokens) == len(teacher_top_logprobs):
        raise ValueError(
            f"{len(teacher_tokens)} teacher tokens but {len(teacher_top_tokens)} candidate lists and "
            f"{len(teacher_top_logprobs)} log-prob lists"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ids = np.asarray(student_ids, dtype=np.int32).reshape(-1)
    s_pieces = [student_vocab.pieces[i] for i in ids.tolist()]
    decode = piece_decoder(teacher_style)
    t_pieces = [decode[t] for t in teacher_tokens]

    # Special tokens spell b"" and so never pair: not here (all), not by span, not as whitespace.
    if t_pieces == s_pieces and all(s_pieces):
        teacher_index = np.arange(ids.shape[0], dtype=np.int32)  # identity: same tokens, same places
    else:
        teacher_index = pair_tokens(t_pieces, s_pieces)
    candidates = _Candidates(teacher_top_tokens, teacher_top_logprobs, teacher_style, k)
    return _fill_targets(ids, teacher_index, t_pieces, s_pieces, candidates, student_vocab)


@dataclass(frozen=True)
class _Candidates:
    tokens: Sequence[Sequence[str]]
    logprobs: Sequence[Sequence[float]]
    style: TokenStyle
    k: int


def _split_whitespace(piece: bytes) -> tuple[bytes, bytes, bytes]:
    """(leading whitespace, the rest, trailing whitespace); a whitespace-only piece is all lead."""
    core = piece.strip(WHITESPACE)
    if not core:
        return piece, b"", b""
    lead = piece[: len(piece) - len(piece.lstrip(WHITESPACE))]
    trail = piece[len(piece.rstrip(WHITESPACE)) :]
    return lead, core, trail


def _fill_targets(
    ids: np.ndarray,
    teacher_index: np.ndarray,
    t_pieces: list[bytes],
    s_pieces: list[bytes],
    candidates: _Candidates,
    vocab: Vocab,
) -> AlignedTargets:
    # Written for speed (thousands of chains a second): per-candidate work is one C-level map over
    # Python lists, numpy does the rest, and a Python loop runs only over re-dressed rows.
    size, k, style = ids.shape[0], candidates.k, candidates.style
    cand_ids = np.full((size, k), PAD_ID, np.int32)
    cand_logprobs = np.full((size, k), -np.inf, np.float32)
    rows = np.flatnonzero(teacher_index >= 0)
    if rows.size:
        sources = teacher_index[rows]
        table = _candidate_table(candidates, vocab)
        if table is not None:  # every position lists the same number of candidates: pure numpy
            table_ids, table_logprobs = table
            width = min(k, table_ids.shape[1])
            cand_ids[rows, :width] = table_ids[sources, :width]
            cand_logprobs[rows, :width] = table_logprobs[sources, :width]
        else:
            _fill_ragged(cand_ids, cand_logprobs, rows, sources.tolist(), candidates, vocab)
        # Where teacher and student token differ in whitespace, re-dress the candidates (module doc).
        row_list, source_list = rows.tolist(), sources.tolist()
        differs = map(operator.ne, map(s_pieces.__getitem__, row_list), map(t_pieces.__getitem__, source_list))
        for r in compress(range(len(row_list)), differs):
            row, source = row_list[r], source_list[r]
            offered = candidates.tokens[source][:k]
            redressed = _redress(offered, t_pieces[source], s_pieces[row], vocab, style)
            if redressed is not None:
                cand_ids[row, : len(redressed)] = redressed
        # A candidate the student cannot spell, or a teacher log-prob of -inf/nan, is no candidate.
        cand_ids[~np.isfinite(cand_logprobs)] = PAD_ID
        _drop_duplicates(cand_ids, rows)
        cand_logprobs[cand_ids == PAD_ID] = -np.inf

    soft = (cand_ids != PAD_ID).any(axis=1)  # rows never filled stay all padding
    hard = ~soft
    if hard.any():
        cand_ids[hard, 0] = ids[hard]
        cand_logprobs[hard, 0] = 0.0
    return AlignedTargets(
        student_ids=ids,
        cand_ids=cand_ids,
        cand_logprobs=cand_logprobs,
        soft=soft,
        teacher_index=np.where(soft, teacher_index, -1).astype(np.int32),
    )


def _candidate_table(candidates: _Candidates, vocab: Vocab) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids int32[N, w], log-probs float32[N, w]) for every teacher position, verbatim mapping; None
    when positions list different numbers of candidates (then see `_fill_ragged`)."""
    n = len(candidates.tokens)
    if n == 0:
        return None
    try:
        logprobs = np.asarray(candidates.logprobs, np.float32)
    except ValueError:  # ragged
        return None
    if logprobs.ndim != 2 or logprobs.shape[0] != n:
        return None
    if set(map(len, candidates.tokens)) != {logprobs.shape[1]}:
        raise ValueError("teacher_top_tokens and teacher_top_logprobs differ in length at some position")
    flat = map(vocab.id_of(candidates.style).__getitem__, chain.from_iterable(candidates.tokens))
    return np.fromiter(flat, np.int32, logprobs.size).reshape(logprobs.shape), logprobs


def _fill_ragged(
    cand_ids: np.ndarray,
    cand_logprobs: np.ndarray,
    rows: np.ndarray,
    sources: list[int],
    candidates: _Candidates,
    vocab: Vocab,
) -> None:
    k = candidates.k
    offered = [candidates.tokens[i][:k] for i in sources]
    logprobs = [candidates.logprobs[i][:k] for i in sources]
    lengths = list(map(len, offered))
    if lengths != list(map(len, logprobs)):
        raise ValueError("teacher_top_tokens and teacher_top_logprobs differ in length at some position")
    flat_ids = list(map(vocab.id_of(candidates.style).__getitem__, chain.from_iterable(offered)))
    counts = np.asarray(lengths)
    starts = np.cumsum(counts) - counts
    row_of = np.repeat(rows, counts)
    col_of = np.arange(len(flat_ids)) - np.repeat(starts, counts)
    cand_ids[row_of, col_of] = flat_ids
    cand_logprobs[row_of, col_of] = np.fromiter(chain.from_iterable(logprobs), np.float32, len(flat_ids))


def _redress(
    row: Sequence[str], t_piece: bytes, s_piece: bytes, vocab: Vocab, style: TokenStyle
) -> list[int] | None:
    """Candidate ids with the teacher token's whitespace swapped for the student token's; None when
    both tokens carry the same whitespace (candidates then map verbatim)."""
    t_lead, _, t_trail = _split_whitespace(t_piece)
    s_lead, _, s_trail = _split_whitespace(s_piece)
    if t_lead == s_lead and t_trail == s_trail:
        return None
    split = _splitter(style)
    ids = vocab.ids_by_bytes
    out = []
    for candidate in row:
        lead, core, trail = split[candidate]
        if lead == t_lead and trail == t_trail and core:
            out.append(ids.get(s_lead + core + s_trail, PAD_ID))
        else:
            out.append(PAD_ID)
    return out


_SPLITTERS: dict[TokenStyle, _Memo] = {}


def _splitter(style: TokenStyle) -> Mapping[str, tuple[bytes, bytes, bytes]]:
    memo = _SPLITTERS.get(style)
    if memo is None:
        decode = piece_decoder(style)
        memo = _SPLITTERS[style] = _Memo(lambda piece: _split_whitespace(decode[piece]))
    return memo


@lru_cache(maxsize=64)
def _earlier_slots(k: int) -> np.ndarray:
    """bool[k, k]: [c, c'] is true when slot c' comes before slot c."""
    return np.tril(np.ones((k, k), bool), -1)


def _drop_duplicates(cand_ids: np.ndarray, rows: np.ndarray) -> None:
    """Pad all but the first of repeated candidate ids in a row, in place (teacher APIs may list the
    sampled token twice, as Codex did for Fu et al.; counting it twice would double its probability)."""
    block = cand_ids[rows]
    same = block[:, :, None] == block[:, None, :]  # [R, k, k]; k is small
    repeat = (same & _earlier_slots(block.shape[1])).any(axis=2) & (block != PAD_ID)
    if repeat.any():
        block[repeat] = PAD_ID
        cand_ids[rows] = block
