"""SampleStore on real SQLite files: round trip, idempotence, resumption, refusal of bad files and mixed runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import numpy as np
import pytest

from cotspec.errors import CotspecError
from cotspec.store import SampleStore
from cotspec.store.records import RunConfig
from cotspec.store.schema import SCHEMA_VERSION
from support.sample_rows import examples, make_row, run_config


def _file_digests(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}


def test_round_trip_keeps_text_tokens_and_topk_exactly(new_store):
    store, run_id = new_store
    rows = [
        make_row(f"gsm8k/train/{q}", i, run_id=run_id, n_tokens=3 + 7 * i, correct=i == 1)
        for q in range(2)
        for i in range(3)
    ]
    for row in rows:
        assert store.add(row) == 1
    back = {(s.question_id, s.sample_index): s for s in store.iter_samples()}
    assert len(back) == len(rows)
    for row in rows:
        got = back[(row.question_id, row.sample_index)]
        assert got.text == row.text and got.tokens == row.tokens
        assert (got.correct, got.extracted, got.finish_reason) == (row.correct, row.extracted, row.finish_reason)
        assert (got.prompt_tokens, got.completion_tokens, got.generated_tokens) == (
            row.prompt_tokens, row.completion_tokens, row.generated_tokens,
        )  # fmt: skip
        assert got.question == f"Question number {row.question_id.rsplit('/', 1)[1]}?"
        assert got.has_logprobs and got.run_id == run_id
        assert got.top_tokens == [[t for t, _ in position] for position in row.top_logprobs]
        # float32 storage: each value comes back as the nearest float32 to what the teacher sent.
        expected = [np.float32([lp for _, lp in position]) for position in row.top_logprobs]
        for got_lp, want in zip(got.top_logprobs, expected):
            np.testing.assert_array_equal(np.float32(got_lp), want)
            np.testing.assert_allclose(got_lp, want, rtol=1e-7)


def test_rows_without_logprobs_round_trip(new_store):
    store, run_id = new_store
    store.add(make_row("gsm8k/train/0", 0, run_id=run_id, logprobs=False, text="no logprobs here"))
    (got,) = store.iter_samples()
    assert (got.text, got.has_logprobs, got.tokens, got.top_tokens, got.top_logprobs) == (
        "no logprobs here", False, None, None, None,
    )  # fmt: skip


def test_writes_are_idempotent_and_first_write_wins(new_store):
    store, run_id = new_store
    first = make_row("gsm8k/train/0", 0, run_id=run_id, text="first", logprobs=False)
    again = make_row("gsm8k/train/0", 0, run_id=run_id, text="second", logprobs=False)
    assert store.add(first) == 1
    assert store.add(again) == 0
    assert store.add_many([again, make_row("gsm8k/train/0", 1, run_id=run_id)]) == 1
    assert len(store) == 2
    assert [s.text for s in store.iter_samples()][0] == "first"


def test_missing_pairs_are_exactly_the_unstored_ones(new_store):
    store, run_id = new_store
    ids = [ex.id for ex in examples(3)]
    assert store.missing(ids, 2) == [(q, i) for q in ids for i in range(2)]
    store.add_many([make_row(q, i, run_id=run_id) for q, i in [(ids[0], 0), (ids[0], 1), (ids[2], 1)]])
    store.add(make_row(ids[1], 5, run_id=run_id))  # an index beyond n does not count towards n
    assert store.missing(ids, 2) == [(ids[1], 0), (ids[1], 1), (ids[2], 0)]
    assert store.missing(ids, 3) == [(ids[0], 2), (ids[1], 0), (ids[1], 1), (ids[1], 2), (ids[2], 0), (ids[2], 2)]
    assert store.missing([], 3) == []


def test_failed_transaction_leaves_nothing_and_does_not_poison_the_token_cache(new_store):
    store, run_id = new_store
    good = make_row("gsm8k/train/0", 0, run_id=run_id, n_tokens=12, seed=1)
    bad = make_row("gsm8k/train/0", 1, run_id=run_id, seed=2)
    bad.sample_index = -1  # violates the CHECK constraint after the tokens were interned
    with pytest.raises(sqlite3.IntegrityError):
        store.add_many([good, bad])
    assert len(store) == 0
    assert store._conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    assert store.add(good) == 1
    (got,) = store.iter_samples()
    assert got.tokens == good.tokens
    assert store.check_integrity() == 1


def test_two_writers_on_one_file_intern_tokens_consistently(tmp_path):
    path = tmp_path / "shared.db"
    a = SampleStore.open(path, writable=True)
    run_id = a.register_run(run_config())
    a.add_questions(examples(2))
    b = SampleStore.open(path, writable=True)
    # a caches ids for its tokens; b then inserts overlapping and new tokens; a must not trust stale state.
    rows = [make_row("gsm8k/train/0", i, run_id=run_id, n_tokens=20, seed=i) for i in range(4)]
    a.add(rows[0])
    b.add(rows[1])
    a.add(rows[2])
    b.add(rows[3])
    for store in (a, b):
        assert [s.tokens for s in store.iter_samples()] == [r.tokens for r in rows]
    a.close()
    b.close()


def test_iteration_filters_dedup_caps_and_keeps_dataset_order(tmp_path):
    store = SampleStore.open(tmp_path / "run.db", writable=True)
    run_id = store.register_run(run_config())
    exs = examples(12)
    store.add_questions(exs)
    q2, q10 = "gsm8k/train/2", "gsm8k/train/10"
    store.add_many([
        make_row(q10, 0, run_id=run_id, text="A", correct=True, logprobs=False),
        make_row(q10, 1, run_id=run_id, text="A", correct=True, logprobs=False),
        make_row(q10, 2, run_id=run_id, text="B", correct=False, logprobs=False),
        make_row(q10, 3, run_id=run_id, text="C", correct=True, logprobs=False),
        make_row(q2, 3, run_id=run_id, text="D", correct=True, logprobs=False),
        make_row(q2, 0, run_id=run_id, text="E", correct=False, logprobs=False),
    ])  # fmt: skip

    def keys(**kw):
        return [(s.question_id, s.sample_index) for s in store.iter_samples(**kw)]

    # Question order is the order they were added (file order), not string order ("10" < "2").
    assert keys() == [(q2, 0), (q2, 3), (q10, 0), (q10, 1), (q10, 2), (q10, 3)]
    assert keys(correct_only=True) == [(q2, 3), (q10, 0), (q10, 1), (q10, 3)]
    assert keys(correct_only=True, dedup=True) == [(q2, 3), (q10, 0), (q10, 3)]
    assert keys(correct_only=True, dedup=True, max_per_question=1) == [(q2, 3), (q10, 0)]
    assert keys(max_per_question=2) == [(q2, 0), (q2, 3), (q10, 0), (q10, 1)]
    with pytest.raises(CotspecError, match="^max_per_question: must be >= 1"):
        keys(max_per_question=0)
    store.close()


def test_same_config_reuses_the_run_and_a_different_one_is_refused(tmp_path):
    path = tmp_path / "run.db"
    with SampleStore.open(path, writable=True) as store:
        run_id = store.register_run(run_config())
        assert store.register_run(run_config()) == run_id
        # Only the prompt's description differs (e.g. the same file at another path): same run.
        assert store.register_run(run_config(prompt="file /elsewhere/prompt_complex.txt")) == run_id
        # A run claims the store for its settings once it has stored a sample (an empty one is dropped).
        store.add_questions(examples(1))
        store.add(make_row("gsm8k/train/0", 0, run_id=run_id))
    with SampleStore.open(path, writable=True) as store:
        with pytest.raises(CotspecError, match=r"temperature=0\.5 but this run has temperature=0\.7") as err:
            store.register_run(run_config(temperature=0.7))
        assert err.value.field == "store" and "set `allow_mixed_runs`" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(CotspecError, match=r"teacher='teacher-7b' but this run has teacher='other' \(set by `model`\)"):
            store.register_run(run_config(teacher="other"))
        with pytest.raises(CotspecError, match=r"prompt_sha256=.*\(set by `prompt_file`, `exemplars` or `shots`\)"):
            store.register_run(run_config(prompt="file mine.txt", prompt_sha256="b" * 64))
        mixed = store.register_run(run_config(temperature=0.7), allow_mixed=True)
        assert mixed != run_id
        assert sorted(store.runs()) == [run_id, mixed]
        assert store.runs()[mixed].temperature == 0.7


def test_changed_question_text_is_refused(new_store):
    store, _ = new_store
    changed = examples(5)
    changed[3] = type(changed[3])(id=changed[3].id, question="edited", answer=changed[3].answer)
    with pytest.raises(CotspecError, match="question text of gsm8k/train/3 differs"):
        store.add_questions(changed)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(CotspecError, match="no such sample store"):
        SampleStore.open(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"question_id,text\nq1,hello\n" * 100, "not a SQLite sample store"),
        (b"", "empty SQLite file"),
    ],
)
def test_non_store_files_are_refused_and_left_alone(tmp_path, content, message):
    path = tmp_path / "bad.db"
    path.write_bytes(content)
    with pytest.raises(CotspecError, match=message) as err:
        SampleStore.open(path)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == content


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    for writable in (False, True):
        with pytest.raises(CotspecError, match="not a cotspec sample store"):
            SampleStore.open(path, writable=writable)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    SampleStore.open(path, writable=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(CotspecError, match=f"newer cotspec .*schema v{SCHEMA_VERSION + 1}.*upgrade cotspec"):
        SampleStore.open(path)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(CotspecError, match="is a directory"):
        SampleStore.open(tmp_path)


def test_damaged_blob_is_reported_by_row(new_store):
    store, run_id = new_store
    store.add(make_row("gsm8k/train/0", 0, run_id=run_id))
    store.add(make_row("gsm8k/train/1", 4, run_id=run_id))
    assert store.check_integrity() == 2
    blob = store._conn.execute("SELECT topk FROM samples WHERE question_id = 'gsm8k/train/1'").fetchone()[0]
    store._conn.execute("UPDATE samples SET topk = ? WHERE question_id = 'gsm8k/train/1'", (blob[:-3],))
    with pytest.raises(CotspecError, match=r"gsm8k/train/1#4 has a damaged top-k blob"):
        store.check_integrity()
    with pytest.raises(CotspecError, match=r"gsm8k/train/1#4 has a damaged top-k blob"):
        list(store.iter_samples())


def test_reading_never_modifies_the_files(new_store, tmp_path):
    store, run_id = new_store
    store.add_many(
        [make_row(f"gsm8k/train/{q}", i, run_id=run_id, correct=i % 2 == 0) for q in range(3) for i in range(4)]
    )
    # The writer stays open, so committed rows are still in the WAL: the reader must see them without a checkpoint.
    path = store.path
    before = _file_digests(path)
    assert any(name.endswith("-wal") for name in before)
    with SampleStore.open(path) as reader:
        assert reader.stats().samples == 12
        assert len(list(reader.iter_samples())) == 12
        reader.export(tmp_path / "out.jsonl", "jsonl")
        with pytest.raises(RuntimeError, match="read-only"):
            reader.add(make_row("gsm8k/train/4", 0, run_id=run_id))
    after = _file_digests(path)
    assert {k: v for k, v in after.items() if not k.endswith("-shm")} == {
        k: v for k, v in before.items() if not k.endswith("-shm")
    }


@pytest.fixture
def unwritable_dirs(monkeypatch):
    """Make the store's `os.access` report the given directories as not writable, as on read-only media.

    Tests run as root, whom permission bits do not stop; tests/cli/test_faults_eval_build_store.py opens a
    store on a truly read-only mount as well.
    """
    from cotspec.store import schema

    blocked: set = set()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(path) in blocked:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(schema.os, "access", access)
    return lambda directory: blocked.add(os.path.abspath(directory))


def _closed_store(directory):
    path = directory / "run.db"
    with SampleStore.open(path, writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(2))
        store.add_many([make_row(f"gsm8k/train/{q}", 0, run_id=run_id, correct=True) for q in range(2)])
    return path


def test_a_closed_store_reads_from_a_read_only_directory(tmp_path, unwritable_dirs):
    # WAL readers need a -shm index; SQLite could not create one on read-only media and the store was
    # reported as "not a SQLite sample store". A cleanly closed store has no log to read: opened immutable.
    path = _closed_store(tmp_path)
    unwritable_dirs(tmp_path)
    with SampleStore.open(path) as reader:
        assert reader.stats().samples == 2
        assert len(list(reader.iter_samples())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.db"]  # no -wal or -shm was created


def test_unmerged_log_on_read_only_media_says_what_to_do(tmp_path, unwritable_dirs):
    with SampleStore.open(tmp_path / "live" / "run.db", writable=True) as writer:
        run_id = writer.register_run(run_config())
        writer.add_questions(examples(1))
        writer.add(make_row("gsm8k/train/0", 0, run_id=run_id))
        # Copied while the writer is open: the commits are still in the -wal, and no -shm travels along.
        media = tmp_path / "media"
        media.mkdir()
        for name in ("run.db", "run.db-wal"):
            shutil.copyfile(tmp_path / "live" / name, media / name)
    unwritable_dirs(media)
    with pytest.raises(CotspecError, match=r"run\.db: its directory is read-only and run\.db-wal holds commits not yet merged"):
        SampleStore.open(media / "run.db")


def test_the_seed_is_recorded_and_another_seed_is_a_new_run_not_a_conflict(tmp_path):
    path = tmp_path / "run.db"
    with SampleStore.open(path, writable=True) as store:
        first = store.register_run(run_config(seed=0))
        store.add_questions(examples(1))
        store.add(make_row("gsm8k/train/0", 0, run_id=first))
        second = store.register_run(run_config(seed=1))  # same distribution: no allow_mixed needed
        assert second != first
        assert store.register_run(run_config(seed=0)) == first
        assert {run.seed for run in store.runs().values()} == {0, 1}


def test_a_run_stored_before_seeds_were_recorded_reads_back_with_no_seed():
    stored = json.loads(run_config(seed=3).to_json())
    del stored["seed"]
    assert RunConfig.from_json(json.dumps(stored)).seed is None


def test_top_k_reads_back_as_arrays_and_the_lists_are_made_from_them(new_store):
    from cotspec.store import TeacherTopK

    store, run_id = new_store
    row = make_row("gsm8k/train/0", 0, run_id=run_id, n_tokens=20, k=5)
    store.add(row)
    (got,) = store.iter_samples()
    assert isinstance(got.topk, TeacherTopK)
    assert got.topk.table.join(got.topk.chosen) == row.text
    assert got.topk.widths.tolist() == [len(position) for position in row.top_logprobs]
    assert got.topk.lists() == (got.tokens, got.top_tokens, got.top_logprobs)
    (plain,) = store.iter_samples(with_topk=False)
    assert plain.topk is None and plain.tokens is None and plain.has_logprobs
