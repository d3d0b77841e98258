"""The teacher's lifecycle in a run: checked up front, served for the sample stage only.

- ``teacher.server: embedded``: the local llama.cpp server (`start_llama_server`) on `teacher.model`
  (the embedded SmolLM2 GGUF by default) is started for the sample stage and stopped when it ends, also
  on failure and Ctrl-C (it is a context manager).
- ``teacher.base_urls``: running OpenAI-compatible servers; each must answer GET /models within
  `teacher.reachability_timeout_s` before any stage runs, or the run stops with one line.
- ``teacher.backend: transformers``: the model is loaded in-process; its reference is checked up front.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import CotspecError
from ..teacher.server import EMBEDDED_PRESET
from .config import TeacherConfig

logger = logging.getLogger(__name__)


def check_teacher(teacher: TeacherConfig) -> None:
    """One-line CotspecError when the teacher cannot be used; cheap (no model load, short timeouts)."""
    if teacher.server == "embedded":
        from ..teacher import engines
        from ..teacher.server import resolve_gguf

        engines.require(teacher.server_engine)
        resolve_gguf(None if teacher.model == EMBEDDED_PRESET else teacher.model)
        return
    if teacher.backend == "openai":
        _check_reachable(teacher)
        return
    from ..models import check_model_reference

    check_model_reference(teacher.model)


def _check_reachable(teacher: TeacherConfig) -> None:
    import httpx

    dead: list[str] = []
    for url in teacher.base_urls:
        try:
            httpx.get(url.rstrip("/") + "/models", timeout=teacher.reachability_timeout_s)
        except httpx.HTTPError as err:
            dead.append(f"{url} ({type(err).__name__})")
    if dead and len(dead) == len(teacher.base_urls):
        raise CotspecError(
            f"teacher.base_urls: no teacher server answers: {', '.join(dead)}; start it (cotspec serve-teacher) "
            "or fix teacher.base_urls; nothing was run"
        )
    if dead:
        logger.warning("teacher servers not answering (the others take their share): %s", ", ".join(dead))


def sample(teacher: TeacherConfig, store: Path, data_dir: Path):
    """Run the sample stage: sampling into `store`, the embedded server up for exactly that long."""
    from ..teacher.sampler import make_teacher_backend, run_sampling
    from ..teacher.server import start_llama_server

    store.parent.mkdir(parents=True, exist_ok=True)
    if teacher.server != "embedded":
        return run_sampling(teacher.for_store(store, data_dir=data_dir), make_teacher_backend)
    gguf = None if teacher.model == EMBEDDED_PRESET else teacher.model
    with start_llama_server(
        gguf, n_ctx=teacher.server_n_ctx, n_threads=teacher.server_threads,
        engine=teacher.server_engine, parallel=teacher.server_parallel,
    ) as server:
        config = teacher.for_store(store, data_dir=data_dir, base_urls=(server.base_url,), backend="openai")
        return run_sampling(config, make_teacher_backend)
