"""Fixtures for store tests."""

from __future__ import annotations

import pytest

from support.sample_rows import examples, run_config


@pytest.fixture
def new_store(tmp_path):
    """A fresh writable store with one registered run and 5 questions; yields (store, run_id)."""
    from cotspec.store import SampleStore

    store = SampleStore.open(tmp_path / "run.db", writable=True)
    run_id = store.register_run(run_config())
    store.add_questions(examples(5))
    yield store, run_id
    store.close()
