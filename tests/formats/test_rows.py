"""Row content hash: stable, sensitive to every column, blind to Arrow batching.

`write_rows` makes the teacher columns and their part of the hash from the store's arrays a batch at a time
(`teacher_columns`); these tests hold it to what rows of plain Python lists give: the same Arrow values
(`pa.Table.from_pylist`, as the build wrote them before) and the same hash as
`support.formats_support.reference_content_hash`, a copy of `ContentHasher.update` from before the arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from support.formats_support import reference_content_hash

from cotspec.formats.rows import FEATURES, ContentHasher, write_rows
from cotspec.store import TeacherTopK


def _row(**changes) -> dict:
    row = {
        "id": "zero_shot_cot:gsm8k/train/0:s0", "question_id": "gsm8k/train/0", "format": "zero_shot_cot",
        "source": "store", "prompt": "Q: q\nLet's think step by step\n", "target": "a b", "exemplar_ids": [],
        "has_logprobs": True, "teacher_tokens": ["a", " b"], "teacher_top_tokens": [["a", "c"], [" b"]],
        "teacher_top_logprobs": [[-0.5, -1.25], [-0.0625]],
    }  # fmt: skip
    return {**row, **changes}


def _digest(*rows: dict) -> str:
    hasher = ContentHasher()
    for row in rows:
        hasher.update(row)
    return hasher.hexdigest()


def _as_written(row: dict, teacher: TeacherTopK | None = None) -> dict:
    """`row` as `iter_rows` yields it: the plain columns and the teacher columns as one `TeacherTopK`."""
    plain = {k: v for k, v in row.items() if not k.startswith("teacher_")}
    if teacher is None and row["has_logprobs"]:
        teacher = TeacherTopK.from_lists(row["teacher_tokens"], row["teacher_top_tokens"], row["teacher_top_logprobs"])
    return {**plain, "teacher": teacher}


def test_hash_changes_with_any_column_and_with_order():
    base = _digest(_row(), _row(id="x"))
    assert base == _digest(_row(), _row(id="x"))
    assert base != _digest(_row(id="x"), _row())
    for changes in (
        {"prompt": "Q: q\n"}, {"target": "a c"}, {"teacher_tokens": ["a ", "b"]},
        {"teacher_top_logprobs": [[-0.5, -1.25], [-0.125]]}, {"exemplar_ids": ["gsm8k/train/3"]},
    ):  # fmt: skip
        assert _digest(_row(**changes), _row(id="x")) != base, changes


def test_logprobs_hash_at_stored_float32_precision():
    # 0.1 is not a float32; the hash sees the value the dataset stores.
    assert _digest(_row(teacher_top_logprobs=[[-0.1, -1.25], [-0.0625]])) == _digest(
        _row(teacher_top_logprobs=[[-0.10000000149011612, -1.25], [-0.0625]])
    )


def test_hasher_is_the_reference_hash():
    rows = [_row(), _row(id="x", prompt='Q: "quoted" \\ back\tslash\n', teacher_tokens=["é", "\x01"])]
    assert _digest(*rows) == reference_content_hash(rows)


def _varied_rows(count: int) -> list[dict]:
    """Rows as the build makes them: teacher chains of ragged top-k (JSON-escaped characters, non-ASCII,
    positions with 0..5 candidates), answer rows without a teacher, a chain shared by two rows."""
    rng = np.random.default_rng(0)
    pieces = ["a", " b", "é", " 🦆", '"', "\\", "\n", "\t", "\x01", "\u2028", "", "bytes:\\xe2\\x80", "’s", "<", " 72"]
    rows = []
    for i in range(count):
        if i % 3 == 0:
            rows.append(_row(id=f"a{i}", format="zero_shot_answer", target=" The answer is 7", has_logprobs=False,
                             teacher_tokens=[], teacher_top_tokens=[], teacher_top_logprobs=[]))  # fmt: skip
            continue
        n = int(rng.integers(0, 40))
        tokens = [pieces[j] for j in rng.integers(0, len(pieces), n)]
        widths = rng.integers(0, 6, n)
        top = [[pieces[j] for j in rng.choice(len(pieces), w, replace=False)] for w in widths]
        logprobs = [sorted(rng.uniform(-20, 0, w).tolist(), reverse=True) for w in widths]
        rows.append(_row(id=f"c{i}", prompt=f"Q: {i} \"x\"\n", target="".join(tokens), exemplar_ids=[f"gsm8k/train/{i}"],
                         teacher_tokens=tokens, teacher_top_tokens=top, teacher_top_logprobs=logprobs))  # fmt: skip
    return rows


@pytest.mark.parametrize("count", [1, 7, 2500])  # 2500: more than one Arrow batch
def test_write_rows_gives_the_values_and_hash_of_plain_lists(tmp_path, count):
    rows = _varied_rows(count)
    written = [_as_written(row) for row in rows]
    if count > 2:  # two rows of one chain, as zero-shot and in-context CoT rows share one
        rows[2] = {**rows[1], "id": "in_context:" + rows[1]["id"]}
        written[2] = {**_as_written(rows[2], written[1]["teacher"])}
    n, digest = write_rows(iter(written), tmp_path / "rows.arrow")
    with pa.memory_map(str(tmp_path / "rows.arrow")) as source:
        table = pa.ipc.open_stream(source).read_all()
    # The values exactly as Arrow made them from the lists (float32 log-probs included), and the same hash.
    expected = pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema)
    assert table.schema == expected.schema
    assert table.to_pylist() == expected.to_pylist()
    assert table.equals(expected)
    assert n == count and digest == reference_content_hash(rows) == _digest(*rows)


def test_a_different_candidate_changes_the_written_hash(tmp_path):
    rows = _varied_rows(4)
    changed = [dict(r) for r in rows]
    changed[1]["teacher_top_logprobs"] = [[v - 1 for v in pos] for pos in changed[1]["teacher_top_logprobs"]]
    assert any(changed[1]["teacher_top_logprobs"])
    _, digest = write_rows(iter(_as_written(r) for r in rows), tmp_path / "a.arrow")
    _, other = write_rows(iter(_as_written(r) for r in changed), tmp_path / "b.arrow")
    assert digest != other and other == reference_content_hash(changed)
