"""The sample store's SQLite schema, its version, and opening a file safely.

A store is one SQLite file. `PRAGMA application_id` marks it as a cotspec store and `PRAGMA user_version`
holds the schema version, so `cotspec store stats some.db` can tell a foreign SQLite file or a store
written by a newer cotspec from a good one before reading a row.

Durability: WAL journal with ``synchronous=NORMAL``. Every commit is appended to the WAL before it
returns, so a killed process (SIGKILL, OOM, Ctrl-C) loses nothing that was committed and never leaves a
half-written row. Only an OS crash or power loss can roll back the last few commits (never corrupt
the file); the sampler then simply asks the teacher for those samples again. ``synchronous=FULL``
would close that window at the cost of an fsync per row.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import CotspecError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x43535453  # b"CSTS": "cotspec sample store"
BUSY_TIMEOUT_MS = 30_000

DDL = """
CREATE TABLE runs (
    run_id      INTEGER PRIMARY KEY,
    config      TEXT NOT NULL UNIQUE,  -- canonical JSON of RunConfig: teacher, task, prompt, sampling
    created_at  REAL NOT NULL          -- unix seconds
);

-- Questions in the order they were first sampled (rowid), so exports follow the dataset's order.
CREATE TABLE questions (
    question_id TEXT NOT NULL UNIQUE,  -- stable task id, e.g. gsm8k/train/123
    question    TEXT NOT NULL,
    gold        TEXT NOT NULL
);

-- Token strings, stored once per store and referenced by id from the top-k blobs.
CREATE TABLE tokens (
    token_id    INTEGER PRIMARY KEY,
    piece       BLOB NOT NULL UNIQUE   -- UTF-8 (surrogatepass) bytes of the token string
);

CREATE TABLE samples (
    question_id       TEXT NOT NULL REFERENCES questions (question_id),
    sample_index      INTEGER NOT NULL CHECK (sample_index >= 0),
    run_id            INTEGER NOT NULL REFERENCES runs (run_id),
    prompt_sha256     TEXT NOT NULL,     -- hash of the exact prompt text sent to the teacher
    text              TEXT NOT NULL,     -- the chain, cut after its answer line
    finish_reason     TEXT NOT NULL,     -- stop | length
    extracted         TEXT,              -- the task's extract(text); NULL when no answer was found
    correct           INTEGER NOT NULL CHECK (correct IN (0, 1)),
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,  -- tokens of `text`; equals the blob's n when it has logprobs
    generated_tokens  INTEGER NOT NULL,  -- tokens the teacher produced (paid for), >= completion_tokens
    has_logprobs      INTEGER NOT NULL CHECK (has_logprobs IN (0, 1)),
    topk              BLOB,              -- store/blob.py layout; NULL without logprobs
    created_at        REAL NOT NULL,     -- unix seconds when the row was committed
    PRIMARY KEY (question_id, sample_index)
);
"""


def _init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(
        "BEGIN IMMEDIATE;"
        + DDL
        + f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )


def _check_header(conn: sqlite3.Connection, path: Path, writable: bool) -> None:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.OperationalError as err:
        # The file could not be read at all (permissions, a vanished directory): say so, not "not a store".
        raise CotspecError(
            f"{path}: SQLite cannot read the sample store ({err}); check that it and its directory are readable"
        ) from None
    except sqlite3.DatabaseError as err:
        raise CotspecError(
            f"{path}: not a SQLite sample store ({err}); pass the .db file `cotspec sample --store` wrote"
        ) from None
    if app_id == 0 and version == 0 and n_tables == 0:
        if not writable:
            raise CotspecError(
                f"{path}: empty SQLite file, no samples stored yet; run `cotspec sample --store {path}` first"
            )
        _init_schema(conn)
        return
    if app_id != APPLICATION_ID:
        raise CotspecError(
            f"{path}: a SQLite file but not a cotspec sample store (application_id {app_id:#x}); "
            "pass the file `cotspec sample --store` wrote"
        )
    if version > SCHEMA_VERSION:
        raise CotspecError(
            f"{path}: written by a newer cotspec (store schema v{version}, this cotspec reads up to "
            f"v{SCHEMA_VERSION}); upgrade cotspec"
        )
    if version < 1:
        raise CotspecError(f"{path}: store schema version {version} is invalid; the file is damaged")


def _read_only_query(path: Path) -> str:
    """URI parameters that let SQLite read the store, also from a directory nobody may write.

    Reading a WAL-mode file takes its `-shm` index, which SQLite creates next to the file when missing:
    on read-only media (or a directory without write permission) that fails and every read errors out.
    A store closed cleanly has no log to read (its `-wal` is gone or empty), so it is opened as immutable:
    no index, no locks, nothing created. A log that still holds commits can only be read with its index.
    """
    if os.access(path.parent, os.W_OK | os.X_OK):
        return "mode=ro"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not wal.exists() or wal.stat().st_size == 0:
        return "mode=ro&immutable=1"
    if shm.exists():
        return "mode=ro"  # SQLite >= 3.22 reads the log through an existing index, read-only
    raise CotspecError(
        f"{path}: its directory is read-only and {wal.name} holds commits not yet merged into the store, which "
        f"SQLite can only read through a {shm.name} file it cannot create there; copy {path.name} and "
        f"{wal.name} to a writable directory and read them from there"
    )


def connect(path: Path, writable: bool) -> sqlite3.Connection:
    """Open (writable: create if missing) a store file, checked; read-only opens never modify it."""
    path = Path(path)
    if path.is_dir():
        raise CotspecError(f"{path}: is a directory; pass the sample store's .db file")
    if not writable and not path.exists():
        raise CotspecError(f"{path}: no such sample store; create it with `cotspec sample --store {path}`")
    if writable:
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{quote(str(path.resolve()))}?mode=rwc"
    else:
        uri = f"file:{quote(str(path.resolve()))}?{_read_only_query(path)}"
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each write is exactly one transaction.
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as err:
        raise CotspecError(f"{path}: cannot open sample store ({err})") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _check_header(conn, path, writable)
        if writable:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise CotspecError(
                    f"{path}: the file system refused SQLite's WAL mode (got {mode}); put the store on a local disk"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise CotspecError(f"{path}: not a readable sample store ({err})") from None
    except BaseException:
        conn.close()
        raise
    return conn
