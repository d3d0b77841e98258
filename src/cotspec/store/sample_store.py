"""`SampleStore`: teacher samples in one SQLite file, written as they arrive, resumable after any kill.

    store = SampleStore.open("run.db", writable=True)
    run_id = store.register_run(config)           # refuses a store drawn with other settings
    store.add_questions(examples)
    for question_id, sample_index in store.missing(ids, n=40): ...
    store.add_many(rows)                          # one transaction; duplicates are ignored

Every write is one short transaction (a row, or the n rows of one prompt), so a process killed at any
moment leaves only complete rows, and a restart asks the teacher only for the pairs that are missing.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, CotspecError
from ..tasks.base import Example
from . import blob
from .records import CONFIG_FIELDS, RunConfig, SampleRow, StoredSample
from .export import export_samples
from .schema import connect
from .stats import QuestionCounts, StoreStats, summarize
from .teacher_topk import TeacherTopK, TokenTable

_SAMPLE_COLUMNS = (
    "question_id, sample_index, run_id, prompt_sha256, text, finish_reason, extracted, correct, "
    "prompt_tokens, completion_tokens, generated_tokens, has_logprobs, topk, created_at"
)


def _piece_bytes(token: str) -> bytes:
    # surrogatepass: a token that is half of a UTF-16 pair (possible in JSON from some servers) must
    # still be storable, and must come back unchanged.
    return token.encode("utf-8", "surrogatepass")


def _piece_str(piece: bytes) -> str:
    return piece.decode("utf-8", "surrogatepass")


class SampleStore:
    """A sample store file. Use `SampleStore.open`; close it (or use it as a context manager)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, writable: bool):
        self._conn = conn
        self.path = path
        self.writable = writable
        # piece -> token id, only ever filled from committed rows (ids are never reused or deleted).
        self._token_ids: dict[str, int] = {}

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> SampleStore:
        """Open a store. Read-only (the default) never modifies the file; writable creates it if missing."""
        path = Path(path)
        return cls(connect(path, writable), path, writable)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- runs and questions ------------------------------------------------------------------------

    def runs(self) -> dict[int, RunConfig]:
        rows = self._conn.execute("SELECT run_id, config FROM runs ORDER BY run_id")
        return {run_id: RunConfig.from_json(config) for run_id, config in rows}

    def register_run(self, config: RunConfig, *, allow_mixed: bool = False) -> int:
        """Id of the run with exactly this config, created if new.

        A store that already holds samples drawn with a different config is refused unless `allow_mixed`:
        mixing temperatures or teachers silently would corrupt the training data's distribution. A run
        that never stored a sample (its command failed before the first answer) is no such claim: it is
        dropped, so the corrected command is not refused because of the failed one.
        """
        self._require_writable()
        # Check and insert in one write transaction, so two processes cannot both add a conflicting run.
        with self._transaction():
            runs = self.runs()
            for run_id, stored in runs.items():
                if stored.first_difference(config) is None:
                    return run_id
            empty = [
                run_id for run_id in runs
                if self._conn.execute("SELECT 1 FROM samples WHERE run_id = ? LIMIT 1", (run_id,)).fetchone() is None
            ]
            self._conn.executemany("DELETE FROM runs WHERE run_id = ?", [(run_id,) for run_id in empty])
            runs = {run_id: stored for run_id, stored in runs.items() if run_id not in empty}
            # Another seed draws from the same distribution: a new run of this store, not a conflict.
            conflicting = [
                stored for stored in runs.values()
                if stored.first_difference(config, ignoring=("prompt", "seed")) is not None
            ]
            if conflicting and not allow_mixed:
                stored = conflicting[0]
                field = stored.first_difference(config, ignoring=("prompt", "seed"))
                assert field is not None
                old, new = getattr(stored, field), getattr(config, field)
                if field == "prompt_sha256":
                    old, new = f"{stored.prompt} ({old[:12]})", f"{config.prompt} ({new[:12]})"
                raise ConfigError(
                    "store",
                    f"{self.path}: holds samples drawn with {field}={old!r} but this run has {field}={new!r} "
                    f"(set by {CONFIG_FIELDS.get(field, field)}); use another one, "
                    "or set `allow_mixed_runs` to add them anyway",
                )
            cur = self._conn.execute(
                "INSERT INTO runs (config, created_at) VALUES (?, ?)", (config.to_json(), time.time())
            )
            return int(cur.lastrowid)

    def add_questions(self, examples: Sequence[Example]) -> None:
        """Record the questions (idempotent). A stored question whose text or gold changed is an error."""
        self._require_writable()
        with self._transaction():
            self._conn.executemany(
                "INSERT INTO questions (question_id, question, gold) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(ex.id, ex.question, ex.answer) for ex in examples],
            )
        wanted = {ex.id: ex for ex in examples}
        query = "SELECT question_id, question, gold FROM questions WHERE question_id IN ({})"
        for qid, question, gold in self._select_in(query, list(wanted)):
            ex = wanted[qid]
            if (question, gold) != (ex.question, ex.answer):
                changed = "question text" if question != ex.question else "gold answer"
                raise ConfigError(
                    "store",
                    f"{self.path}: the {changed} of {qid} differs from the one stored (the data file changed?); "
                    "use a new one for the new data",
                )

    # ---- samples -----------------------------------------------------------------------------------

    def missing(self, question_ids: Iterable[str], n: int) -> list[tuple[str, int]]:
        """The (question id, sample index < n) pairs not stored yet, in question order then index order."""
        question_ids = list(question_ids)
        have: dict[str, set[int]] = defaultdict(set)
        query = "SELECT question_id, sample_index FROM samples WHERE sample_index < ?"
        for qid, index in self._conn.execute(query, (n,)):
            have[qid].add(index)
        return [(qid, i) for qid in question_ids for i in range(n) if i not in have.get(qid, ())]

    def add(self, row: SampleRow) -> int:
        """Write one row in its own transaction; returns 1 if stored, 0 if that pair already existed."""
        return self.add_many([row])

    def add_many(self, rows: Sequence[SampleRow]) -> int:
        """Write rows in ONE transaction (all or none survive a kill); returns how many were new."""
        self._require_writable()
        if not rows:
            return 0
        now = time.time()
        with self._transaction():
            new_ids = self._intern(rows)
            ids = {**self._token_ids, **new_ids}
            cur = self._conn.executemany(
                f"INSERT INTO samples ({_SAMPLE_COLUMNS}) VALUES ({', '.join('?' * 14)}) "
                "ON CONFLICT (question_id, sample_index) DO NOTHING",
                [self._row_values(row, ids, now) for row in rows],
            )
            inserted = cur.rowcount
        # Only now are the new ids durable; a rolled-back transaction must not leave them cached.
        self._token_ids.update(new_ids)
        return inserted

    def iter_samples(
        self,
        *,
        correct_only: bool = False,
        dedup: bool = False,
        max_per_question: int | None = None,
        with_topk: bool = True,
    ) -> Iterator[StoredSample]:
        """Stored samples in question order (as first sampled), then sample index.

        correct_only keeps chains whose answer matches gold; dedup drops a chain whose text equals an
        earlier chain of the same question; max_per_question keeps the first N that pass those filters.
        """
        if max_per_question is not None and max_per_question < 1:
            raise ConfigError("max_per_question", f"must be >= 1, got {max_per_question}")
        table = self._token_table() if with_topk else None
        where = "WHERE s.correct = 1" if correct_only else ""
        topk_col = "s.topk" if with_topk else "NULL"
        query = (
            "SELECT s.question_id, s.sample_index, s.run_id, q.question, q.gold, s.prompt_sha256, s.text, "
            "s.finish_reason, s.extracted, s.correct, s.prompt_tokens, s.completion_tokens, s.generated_tokens, "
            f"s.created_at, s.has_logprobs, {topk_col} "
            f"FROM samples s JOIN questions q ON q.question_id = s.question_id {where} "
            "ORDER BY q.rowid, s.sample_index"
        )
        current, seen, kept = None, set(), 0
        for rec in self._conn.execute(query):
            qid, text = rec[0], rec[6]
            if qid != current:
                current, seen, kept = qid, set(), 0
            if dedup:
                if text in seen:
                    continue
                seen.add(text)
            if max_per_question is not None and kept >= max_per_question:
                continue
            kept += 1
            yield self._stored_sample(rec, table)

    def per_question(self) -> list[QuestionCounts]:
        """Aggregates per question with at least one sample, in question order."""
        query = (
            "SELECT s.question_id, count(*), sum(s.correct), count(DISTINCT s.text), "
            "count(DISTINCT CASE WHEN s.correct THEN s.text END), sum(s.prompt_tokens), "
            "sum(s.generated_tokens), sum(s.completion_tokens), sum(1 - s.has_logprobs) "
            "FROM samples s JOIN questions q ON q.question_id = s.question_id "
            "GROUP BY s.question_id ORDER BY min(q.rowid)"
        )
        return [QuestionCounts(*rec) for rec in self._conn.execute(query)]

    def stats(self) -> StoreStats:
        query = "SELECT finish_reason, count(*) FROM samples GROUP BY finish_reason ORDER BY 2 DESC"
        finish = dict(self._conn.execute(query))
        return summarize(self.per_question(), finish)

    def export(
        self,
        out: str | Path,
        fmt: str,
        *,
        correct_only: bool = True,
        dedup: bool = False,
        max_per_question: int | None = None,
    ) -> int:
        """Write the (filtered) samples to `out` as jsonl or parquet; returns the number of records."""
        out = Path(out)
        for own in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            if out.resolve() == own.resolve():
                raise ConfigError("out", f"{out} is the sample store itself; choose another file name")
        samples = self.iter_samples(correct_only=correct_only, dedup=dedup, max_per_question=max_per_question)
        return export_samples(samples, out, fmt)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM samples").fetchone()[0])

    def check_integrity(self) -> int:
        """Decode every blob and check it against its row's token count; returns rows checked."""
        checked = 0
        for qid, index, has_lp, completion_tokens, topk in self._conn.execute(
            "SELECT question_id, sample_index, has_logprobs, completion_tokens, topk FROM samples"
        ):
            if has_lp:
                try:
                    decoded = blob.decode(topk)
                except (blob.BlobError, TypeError) as err:
                    raise CotspecError(f"{self.path}: sample {qid}#{index} has a damaged top-k blob ({err})") from None
                if decoded.n != completion_tokens:
                    raise CotspecError(
                        f"{self.path}: sample {qid}#{index} has {decoded.n} top-k positions "
                        f"but {completion_tokens} tokens"
                    )
            checked += 1
        return checked

    # ---- internals ---------------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise RuntimeError("this SampleStore was opened read-only")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _select_in(self, query: str, values: list, chunk: int = 500) -> Iterator[tuple]:
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            yield from self._conn.execute(query.format(", ".join("?" * len(part))), part)

    def _intern(self, rows: Sequence[SampleRow]) -> dict[str, int]:
        """Ids for the rows' token strings not yet cached, inserting new ones (inside the transaction)."""
        unknown: set[str] = set()
        for row in rows:
            if row.tokens is None:
                continue
            unknown.update(t for t in row.tokens if t not in self._token_ids)
            for position in row.top_logprobs:
                unknown.update(t for t, _ in position if t not in self._token_ids)
        if not unknown:
            return {}
        pieces = [(_piece_bytes(t),) for t in unknown]
        self._conn.executemany("INSERT INTO tokens (piece) VALUES (?) ON CONFLICT DO NOTHING", pieces)
        # Another process may have inserted some of them first: read every id back rather than assume.
        return {
            _piece_str(piece): int(token_id)
            for token_id, piece in self._select_in(
                "SELECT token_id, piece FROM tokens WHERE piece IN ({})", [p for (p,) in pieces]
            )
        }

    @staticmethod
    def _row_values(row: SampleRow, ids: dict[str, int], now: float) -> tuple:
        topk_blob = None
        if row.tokens is not None:
            k = max((len(position) for position in row.top_logprobs), default=0)
            n = len(row.tokens)
            cand_ids = np.full((n, k), blob.PAD_ID, dtype=np.int32)
            cand_lp = np.full((n, k), -np.inf, dtype=np.float32)
            for i, position in enumerate(row.top_logprobs):
                for j, (token, logprob) in enumerate(position):
                    cand_ids[i, j] = ids[token]
                    cand_lp[i, j] = logprob
            chosen = np.fromiter((ids[t] for t in row.tokens), dtype=np.int32, count=n)
            topk_blob = blob.encode(blob.TopK(chosen, cand_ids, cand_lp))
        return (
            row.question_id, row.sample_index, row.run_id, row.prompt_sha256, row.text, row.finish_reason,
            row.extracted, int(bool(row.correct)), row.prompt_tokens, row.completion_tokens,
            row.generated_tokens, int(row.tokens is not None), topk_blob, now,
        )  # fmt: skip

    def _token_table(self) -> TokenTable:
        (max_id,) = self._conn.execute("SELECT coalesce(max(token_id), 0) FROM tokens").fetchone()
        pieces: list[str | None] = [None] * (max_id + 1)
        for token_id, piece in self._conn.execute("SELECT token_id, piece FROM tokens"):
            pieces[token_id] = _piece_str(piece)
        return TokenTable(pieces)

    def _stored_sample(self, rec: tuple, table: TokenTable | None) -> StoredSample:
        (qid, index, run_id, question, gold, prompt_sha, text, finish, extracted, correct,
         prompt_tokens, completion_tokens, generated_tokens, created_at, has_lp, topk_blob) = rec  # fmt: skip
        topk = None
        if has_lp and topk_blob is not None:
            try:
                topk = blob.decode(topk_blob)
            except blob.BlobError as err:
                raise CotspecError(f"{self.path}: sample {qid}#{index} has a damaged top-k blob ({err})") from None
        return StoredSample(
            question_id=qid, sample_index=index, run_id=run_id, question=question, gold=gold,
            prompt_sha256=prompt_sha, text=text, finish_reason=finish, extracted=extracted,
            correct=bool(correct), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            generated_tokens=generated_tokens, created_at=created_at, has_logprobs=bool(has_lp),
            topk=None if topk is None or table is None else TeacherTopK.from_blob(topk, table),
        )  # fmt: skip


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self) -> None:
        # IMMEDIATE takes the write lock up front, so a concurrent writer waits (busy_timeout) instead of
        # failing half-way through the transaction.
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            self._conn.execute("ROLLBACK")
