"""The sample store: teacher chains with their top-k log-probabilities in one crash-safe SQLite file."""

from __future__ import annotations

from .blob import TopK
from .export import FORMATS, NothingToExport
from .records import RunConfig, SampleRow, StoredSample
from .sample_store import SampleStore
from .stats import StoreStats, pass_at_k
from .teacher_topk import TeacherTopK, TokenTable

__all__ = ["FORMATS", "NothingToExport", "RunConfig", "SampleRow", "SampleStore", "StoreStats", "StoredSample", "TeacherTopK", "TokenTable", "TopK", "pass_at_k"]
