"""A sample's teacher tokens and top-k candidates as arrays: what a blob holds, padding removed.

A blob stores int32 ids into the store's `tokens` table, and one pass over the store reads that table
once into a `TokenTable`. `TeacherTopK` keeps a sample's ids and float32 log-probabilities as flat
arrays, so a reader can turn a whole batch of samples into Arrow columns with one `take` per column
(`cotspec.formats.teacher_columns`), and Python lists are made only for readers that ask for them
(`TeacherTopK.lists`: export, tests).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import pyarrow as pa

from .blob import TopK


class TokenTable:
    """Token strings by id; None for an id no token has (ids are never reused, but may have gaps)."""

    def __init__(self, strings: Sequence[str | None]):
        self.strings = list(strings)

    def __len__(self) -> int:
        return len(self.strings)

    def join(self, ids: np.ndarray) -> str:
        """The text the tokens `ids` spell, in order."""
        strings = self.strings
        return "".join([strings[i] for i in ids.tolist()])

    @cached_property
    def representable(self) -> np.ndarray:
        """bool per id: the id has a string and the string is valid Unicode, so Arrow can hold it.

        The store keeps a token that is half of a UTF-16 surrogate pair (JSON from some servers carries
        one) unchanged; such a string has no UTF-8 spelling, so it cannot be an Arrow string.
        """
        return np.fromiter((_is_valid_unicode(s) for s in self.strings), dtype=bool, count=len(self.strings))

    @cached_property
    def arrow(self) -> pa.StringArray:
        """The strings as one Arrow array indexed by id, null where not `representable`."""
        ok = self.representable.tolist()
        return pa.array([s if good else None for s, good in zip(self.strings, ok)], type=pa.string())


@dataclass(frozen=True, eq=False)
class TeacherTopK:
    """One sample's teacher tokens and candidates, padding removed, as ids into `table`.

    Position i's candidates are the widths[i] entries of `candidate_ids` (and `candidate_logprobs`) that
    follow those of positions < i, most likely first.
    """

    table: TokenTable
    chosen: np.ndarray
    """int32 [n]: the sampled token at each position (the chain's tokens)."""
    widths: np.ndarray
    """int32 [n]: candidates at each position (k, or fewer where the server sent fewer)."""
    candidate_ids: np.ndarray
    """int32 [sum(widths)]."""
    candidate_logprobs: np.ndarray
    """float32 [sum(widths)]."""

    @classmethod
    def from_blob(cls, topk: TopK, table: TokenTable) -> TeacherTopK:
        widths, ids, logprobs = topk.unpadded()
        return cls(table, topk.chosen, widths, ids, logprobs)

    @classmethod
    def from_lists(
        cls, tokens: Sequence[str], top_tokens: Sequence[Sequence[str]], top_logprobs: Sequence[Sequence[float]]
    ) -> TeacherTopK:
        """The arrays of a chain given as lists (as the dataset's columns spell it), with a table of its own."""
        index: dict[str, int] = {}
        for token in itertools.chain(tokens, itertools.chain.from_iterable(top_tokens)):
            index.setdefault(token, len(index))
        return cls(
            TokenTable(list(index)),
            np.array([index[t] for t in tokens], dtype=np.int32),
            np.array([len(position) for position in top_tokens], dtype=np.int32),
            np.array([index[t] for t in itertools.chain.from_iterable(top_tokens)], dtype=np.int32),
            np.array(list(itertools.chain.from_iterable(top_logprobs)), dtype=np.float32),
        )

    @property
    def representable(self) -> bool:
        """Whether every candidate can be an Arrow string (see `TokenTable.representable`)."""
        return bool(self.table.representable[self.candidate_ids].all())

    def __eq__(self, other: object) -> bool:
        """Same tokens and candidates, spelled out (two stores number their tokens differently)."""
        return isinstance(other, TeacherTopK) and self.lists() == other.lists()

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def lists(self) -> tuple[list[str], list[list[str]], list[list[float]]]:
        """(tokens, top tokens per position, their log-probabilities) as Python lists."""
        strings = self.table.strings
        ends = np.cumsum(self.widths).tolist()
        spans = list(zip([0, *ends[:-1]], ends))
        names, values = [strings[i] for i in self.candidate_ids.tolist()], self.candidate_logprobs.tolist()
        tokens = [strings[i] for i in self.chosen.tolist()]
        return tokens, [names[a:b] for a, b in spans], [values[a:b] for a, b in spans]


def _is_valid_unicode(text: str | None) -> bool:
    if text is None:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
