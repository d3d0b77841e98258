"""BuildConfig refuses bad settings with one line naming the field (the CLI shows it as the flag)."""

from __future__ import annotations

import pytest

from cotspec.errors import ConfigError, CotspecError
from cotspec.fieldhelp import field_docs
from cotspec.formats import FORMATS, BuildConfig, parse_formats, parse_weights


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gold": False}, "nothing to build from"),
        ({"store": "missing.db"}, "store: missing.db: no such file"),
        ({"formats": ("zero_shot_cot", "few_shot")}, "formats: unknown format 'few_shot'"),
        ({"formats": ("zero_shot_cot", "zero_shot_cot")}, "formats: names a format twice"),
        ({"formats": ()}, "formats: is empty"),
        ({"weights": (1.0, 2.0)}, "weights: has 2 values but `formats` names 4 formats"),
        ({"weights": (1.0, 0.0, 1.0, 1.0)}, "the weight of zero_shot_cot must be a positive number"),
        ({"weights": (1.0, float("nan"), 1.0, 1.0)}, "weights: the weight of zero_shot_cot"),
        ({"shots": 0}, "shots: must be >= 1"),
        ({"limit": 0}, "limit: must be >= 1"),
        ({"max_per_question": 3}, "max_per_question: limits store chains; it needs `store`"),
    ],
)
def test_bad_settings_name_their_field(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    settings = {"out": tmp_path / "out", "gold": True, **overrides}
    with pytest.raises(CotspecError, match=message.replace("(", r"\(")) as err:
        BuildConfig(**settings)
    assert "\n" not in str(err.value)


def test_zero_shots_are_fine_without_in_context_formats(tmp_path):
    assert BuildConfig(out=tmp_path, gold=True, formats=("zero_shot_cot",), shots=0).shots == 0


def test_store_that_is_a_directory(tmp_path):
    with pytest.raises(CotspecError, match="is a directory"):
        BuildConfig(out=tmp_path / "o", store=tmp_path)


def test_parsers():
    assert parse_formats("zero_shot_cot, in_context_cot") == ("zero_shot_cot", "in_context_cot")
    assert parse_formats("all") == FORMATS
    assert parse_weights("1,2.5, 3") == (1.0, 2.5, 3.0)
    with pytest.raises(ConfigError, match="weights: must be a number, got 'x'"):
        parse_weights("1,x")


def test_every_field_has_help():
    from dataclasses import fields

    assert set(field_docs(BuildConfig)) == {f.name for f in fields(BuildConfig)}


def test_all_formats_and_errors_carry_the_field(tmp_path):
    assert BuildConfig(out=tmp_path, gold=True, formats=("all",)).formats == FORMATS
    with pytest.raises(ConfigError) as err:
        BuildConfig(out=tmp_path, gold=True, limit=0)
    assert err.value.field == "limit" and err.value.message == "must be >= 1, got 0"
