"""The backend registry is the one place that builds backends: `cotspec eval` and `cotspec sample` both go
through `create_backend`, each backend from the same `BackendSettings`.

The end-to-end tests register a fake backend. That is legitimate here: what is under test is the registry
path (name -> class -> ``from_settings`` -> the runner uses it), not generation, and a fake that records
the settings it was built from shows exactly what each command handed over.
"""

from __future__ import annotations

import sys
import types

import pytest

from cotspec.backends import (
    BACKENDS,
    BackendSettings,
    Completion,
    check_backend_name,
    create_backend,
    get_backend_class,
)
from cotspec.backends.base import RequestsFromGenerate
from cotspec.backends.openai_backend import OpenAIBackend
from cotspec.errors import CotspecError
from cotspec.evaluate.config import EvalConfig
from cotspec.evaluate.runner import run_eval
from cotspec.store import SampleStore
from cotspec.tasks.base import Mode
from cotspec.teacher.config import SampleConfig
from cotspec.teacher.sampler import run_sampling


class RecordingBackend(RequestsFromGenerate):
    """Answers every prompt with "The answer is 18"; remembers the settings each instance was built from."""

    built: list[BackendSettings] = []

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.name = f"recording:{settings.model}"
        self.closed = False

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> RecordingBackend:
        cls.built.append(settings)
        return cls(settings)

    def generate(self, prompts, params, on_tokens=None):
        for index in range(len(prompts)):
            yield index, [
                Completion(text="The answer is 18\n", finish_reason="stop", prompt_tokens=3, completion_tokens=5)
                for _ in range(params.n)
            ]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def register(monkeypatch):
    """register(name): `name` now builds a RecordingBackend, for this test only."""
    module = types.ModuleType("cotspec_test_recording_backend")
    module.RecordingBackend = RecordingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(RecordingBackend, "built", [])

    def register(name: str) -> None:
        monkeypatch.setitem(BACKENDS, name, f"{module.__name__}:RecordingBackend")

    return register


def test_unknown_names_are_refused_listing_the_known_ones():
    for check in (check_backend_name, get_backend_class, lambda name: create_backend(name, BackendSettings())):
        with pytest.raises(CotspecError, match=r"^backend: unknown backend 'vllm'; choose one of openai, transformers$"):
            check("vllm")


def test_openai_is_built_from_settings_without_contacting_a_server():
    settings = BackendSettings(model="m", base_urls=("http://127.0.0.1:9",), concurrency=3, dtype="float32")
    backend = create_backend("openai", settings)
    assert isinstance(backend, OpenAIBackend)
    assert backend.config.base_urls == ("http://127.0.0.1:9/v1",) and backend.config.concurrency == 3
    with pytest.raises(CotspecError, match="^base_urls: is required"):
        create_backend("openai", BackendSettings(model="m"))


def test_transformers_needs_a_model_to_load():
    with pytest.raises(CotspecError, match="needs a model to load"):
        create_backend("transformers", BackendSettings())


def test_eval_builds_the_backend_it_names_through_the_registry(register, tmp_path, data_dir):
    register("fake")
    config = EvalConfig(
        model="some-model", tasks=("gsm8k",), out=tmp_path / "run", mode=Mode.ZERO_SHOT, limit=2, backend="fake",
        batch_size=5, concurrency=3, dtype="float32", trust_remote_code=True, data_dir=data_dir,
    )  # fmt: skip

    summary = run_eval(config)

    assert RecordingBackend.built == [
        BackendSettings(model="some-model", concurrency=3, dtype="float32", batch_size=5, trust_remote_code=True)
    ]
    assert summary["tasks"]["gsm8k"] == {"accuracy": 0.5, "n": 2, "correct": 1}  # gold of question 0 is 18


def test_sample_builds_its_teacher_through_the_registry(register, tmp_path, data_dir):
    register("transformers")  # what --teacher names
    config = SampleConfig(
        store=tmp_path / "run.db", model="some-teacher", limit=2, n=3, dtype="bfloat16", batch_size=4,
        seed=1, data_dir=data_dir,
    )  # fmt: skip

    report = run_sampling(config)

    assert RecordingBackend.built == [BackendSettings(model="some-teacher", dtype="bfloat16", batch_size=4)]
    assert report.written == 6
    with SampleStore.open(tmp_path / "run.db") as store:
        assert sorted((s.question_id, s.sample_index) for s in store.iter_samples(with_topk=False)) == [
            (f"gsm8k/train/{q}", i) for q in range(2) for i in range(3)
        ]


def test_sample_settings_for_a_server_teacher(tmp_path):
    config = SampleConfig(
        store=tmp_path / "r.db", base_urls=("http://a:8000/v1", "http://b:8000/v1"), model="m",
        api_key_env="HOME", concurrency=5,
    )  # fmt: skip
    assert config.backend == "openai"
    assert config.backend_settings == BackendSettings(
        model="m", base_urls=("http://a:8000/v1", "http://b:8000/v1"), api_key_env="HOME", concurrency=5
    )
    assert isinstance(create_backend(config.backend, config.backend_settings), OpenAIBackend)
