"""Row content hash: stable, sensitive to every column, blind to Arrow batching."""

from __future__ import annotations

from cotspec.formats.rows import ContentHasher, write_rows


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


def test_write_rows_returns_count_and_the_same_hash(tmp_path):
    rows = [_row(id=f"r{i}") for i in range(2500)]  # more than one Arrow batch
    count, digest = write_rows(iter(rows), tmp_path / "rows.arrow")
    assert count == 2500 and digest == _digest(*rows)
