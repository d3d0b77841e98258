from pathlib import Path

import pytest

from cotspec.backends import BackendSettings
from cotspec.errors import ConfigError, CotspecError
from cotspec.evaluate.config import EvalConfig
from cotspec.fieldhelp import field_docs


def make(**overrides):
    values = dict(model="m", tasks=("gsm8k",), out=Path("runs/x"))
    values.update(overrides)
    return EvalConfig(**values)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"self_consistency": 0}, "self_consistency"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"concurrency": 0}, "concurrency"),
        ({"backend": "vllm"}, "backend"),
        ({"dtype": "fp8"}, "dtype"),
        ({"tasks": ()}, "tasks"),
        ({"self_consistency": 5, "sc_temperature": 0.0}, "sc_temperature"),
    ],
)
def test_bad_values_name_their_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        make(**overrides)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")


def test_backend_names_come_from_the_registry_and_settings_from_the_flags():
    # A served model's missing --base-url is the backend's to refuse, when it is built (tests/backends).
    config = make(backend="openai", base_urls=("http://a/v1",), api_key_env="K", concurrency=2, batch_size=3)
    assert config.backend_settings == BackendSettings(
        model="m", base_urls=("http://a/v1",), api_key_env="K", concurrency=2, batch_size=3
    )
    with pytest.raises(CotspecError, match="unknown backend 'vllm'; choose one of openai, transformers"):
        make(backend="vllm")


def test_identity_ignores_what_may_change_between_resumes():
    assert make(limit=5, batch_size=4).identity() == make(limit=50, batch_size=64).identity()
    assert make(max_new_tokens=128).identity() != make().identity()


def test_every_field_has_help_text():
    docs = field_docs(EvalConfig)
    assert set(docs) == set(EvalConfig.__dataclass_fields__)
    assert docs["limit"].startswith("Use only the first N questions of each task")


def test_eval_and_sample_share_their_generation_settings(tmp_path):
    from cotspec.teacher.config import SampleConfig

    sample = SampleConfig(model="m", store=tmp_path / "s.db")
    assert make().mode.value == "zero-shot"  # students are trained and evaluated zero-shot
    for name in ("max_new_tokens", "seed", "batch_size", "concurrency", "dtype", "limit", "tasks", "backend"):
        assert getattr(sample, name) == getattr(make(), name), name
        assert field_docs(SampleConfig)[name] == field_docs(EvalConfig)[name]
    # The backend follows the servers unless named.
    assert make(base_urls=("http://a/v1",)).backend == "openai" and make().backend == "transformers"
