"""The three teacher columns of a batch of rows, from the store's arrays to Arrow without per-token Python.

A chain's teacher data stays what the store decoded (`cotspec.store.TeacherTopK`: int32 ids into the
store's token table, float32 log-probabilities). For a batch of rows, `teacher_columns` concatenates those
arrays with numpy, makes `teacher_tokens`, `teacher_top_tokens` and `teacher_top_logprobs` with one Arrow
`take` per column, and spells the same values the way `rows.ContentHasher` hashes them (compact JSON,
float32 bytes) with Arrow's string kernels. Turning every candidate into a Python string and float and
back into Arrow, as the build once did, was 60% of its time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence
from weakref import WeakKeyDictionary

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..store import TeacherTopK, TokenTable

TEACHER_COLUMNS = ("teacher_tokens", "teacher_top_tokens", "teacher_top_logprobs")

# JSON spelling of every string of a token table, made once per table (a build reads one).
_JSON_OF: WeakKeyDictionary[TokenTable, pa.StringArray] = WeakKeyDictionary()


@dataclass(frozen=True)
class TeacherColumns:
    """A batch's teacher columns as Arrow arrays, and per row what the content hash reads of them."""

    tokens: pa.Array
    """List(string), one entry per row (empty for a row without a teacher)."""
    top_tokens: pa.Array
    """List(List(string))."""
    top_logprobs: pa.Array
    """List(List(float32))."""
    hash_tails: list[bytes]
    """Per row, `,<teacher_tokens as JSON>,<teacher_top_tokens as JSON>]<log-probs as float32 bytes>`: the
    end of the bytes `rows.ContentHasher` hashes for the row (see `ContentHasher.update_spelled`)."""


def teacher_columns(teachers: Sequence[TeacherTopK | None], types: Sequence[pa.DataType]) -> TeacherColumns:
    """The teacher columns of rows whose chains are `teachers` (None: the row has no teacher log-probs).

    `types` are the Arrow types of the three columns, in `TEACHER_COLUMNS` order. A chain is usually in
    two rows of a batch (zero-shot and in-context CoT); its hash tail is spelled once.
    """
    flat = _Flat(teachers)
    tokens_type, top_tokens_type, top_logprobs_type = types
    token_strings = flat.strings.take(flat.chosen)
    candidate_strings = flat.strings.take(flat.candidates)
    if token_strings.null_count or candidate_strings.null_count:
        raise ValueError("a teacher token has no Arrow string (the chain should have been kept as plain text)")
    by_position = pa.ListArray.from_arrays(flat.position_offsets, candidate_strings, type=top_tokens_type.value_type)
    logprobs = pa.ListArray.from_arrays(flat.position_offsets, flat.logprobs, type=top_logprobs_type.value_type)

    unique = list({id(t): t for t in teachers if t is not None}.values())
    spelled = _hash_tails(_Flat(unique))
    which = {id(t): i for i, t in enumerate(unique)}
    return TeacherColumns(
        tokens=pa.ListArray.from_arrays(flat.row_offsets, token_strings, type=tokens_type),
        top_tokens=pa.ListArray.from_arrays(flat.row_offsets, by_position, type=top_tokens_type),
        top_logprobs=pa.ListArray.from_arrays(flat.row_offsets, logprobs, type=top_logprobs_type),
        hash_tails=[_EMPTY_TAIL if t is None else spelled[which[id(t)]] for t in teachers],
    )


_EMPTY_TAIL = b",[],[]]"


def _hash_tails(flat: _Flat) -> list[bytes]:
    """`TeacherColumns.hash_tails` of the rows of `flat`, spelled by Arrow's string kernels."""
    tokens_json = _json_lists(flat.row_offsets, flat.spelled.take(flat.chosen))
    per_position = _json_lists(flat.position_offsets, flat.spelled.take(flat.candidates))
    top_tokens_json = _json_lists(flat.row_offsets, per_position)
    candidate_offsets = pc.take(flat.position_offsets, flat.row_offsets).to_numpy()
    logprob_bytes = pa.Array.from_buffers(
        pa.binary(), len(flat.row_offsets) - 1, [None, pa.py_buffer(4 * candidate_offsets), flat.logprobs.buffers()[1]]
    )  # fmt: skip
    parts = [_bytes(","), tokens_json.cast(pa.binary()), _bytes(","), top_tokens_json.cast(pa.binary()), _bytes("]")]
    return pc.binary_join_element_wise(*parts, logprob_bytes, _bytes("")).to_pylist()


class _Flat:
    """The arrays of some chains concatenated, with Arrow list offsets: rows (one per chain, or None for
    no teacher) into positions (one per token), positions into candidates."""

    def __init__(self, teachers: Sequence[TeacherTopK | None]):
        present = [t for t in teachers if t is not None]
        self.strings, self.spelled, shift = _tables(present)
        self.chosen = pa.array(_concat([_shifted(t.chosen, shift[id(t.table)]) for t in present], np.int32))
        self.candidates = pa.array(_concat([_shifted(t.candidate_ids, shift[id(t.table)]) for t in present], np.int32))
        self.logprobs = pa.array(_concat([t.candidate_logprobs for t in present], "<f4"))
        self.row_offsets = _offsets(np.cumsum([0 if t is None else len(t.chosen) for t in teachers], dtype=np.int64))
        widths = _concat([t.widths for t in present], np.int32)
        self.position_offsets = _offsets(np.cumsum(widths, dtype=np.int64))


def _tables(present: list[TeacherTopK]) -> tuple[pa.StringArray, pa.StringArray, dict[int, int]]:
    """(strings, their JSON spellings, id shift per table): one id space over the batch's token tables.

    A build's chains share the store's one table (no shift, no copy); chains made elsewhere may not.
    """
    tables = list({id(t.table): t.table for t in present}.values())
    shift, start = {}, 0
    for table in tables:
        shift[id(table)] = start
        start += len(table)
    if len(tables) == 1:
        return tables[0].arrow, _json_strings(tables[0]), shift
    if not tables:
        return pa.array([], type=pa.string()), pa.array([], type=pa.string()), shift
    strings = pa.concat_arrays([t.arrow for t in tables])
    return strings, pa.concat_arrays([_json_strings(t) for t in tables]), shift


def _json_strings(table: TokenTable) -> pa.StringArray:
    """Each string of `table` as a JSON string literal, exactly as `json.dumps(..., ensure_ascii=False)`
    writes it inside a list; null where the table's Arrow array is null."""
    spelled = _JSON_OF.get(table)
    if spelled is None:
        encode = json.encoder.encode_basestring  # the encoder json.dumps uses for str when ensure_ascii=False
        ok = table.representable.tolist()
        spelled = pa.array([encode(s) if good else None for s, good in zip(table.strings, ok)], type=pa.string())
        _JSON_OF[table] = spelled
    return spelled


def _json_lists(offsets: pa.Int32Array, items: pa.StringArray) -> pa.StringArray:
    """Per list of `offsets`, its already-spelled JSON items joined as a compact JSON list: `[a,b]`."""
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _bytes(text: str) -> pa.Scalar:
    return pa.scalar(text.encode(), type=pa.binary())


def _shifted(ids: np.ndarray, shift: int) -> np.ndarray:
    return ids + shift if shift else ids


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype=dtype)


def _offsets(ends: np.ndarray) -> pa.Int32Array:
    """Arrow list offsets (int32, leading 0) from cumulative ends."""
    if len(ends) and ends[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{ends[-1]} list items in one batch of rows exceed Arrow's int32 offsets")
    return pa.array(np.concatenate([[0], ends]).astype(np.int32))
