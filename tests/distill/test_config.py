"""Run config: YAML + dotted overrides, typed coercion, one-line errors that name the key (and line)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from cotspec.distill.config import SECTIONS, DistillConfig, differing_keys, flatten, help_lines, load_config, to_yaml
from cotspec.errors import CotspecError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_then_flags_then_overrides(tmp_path):
    path = write(tmp_path, "out: runs/a\ntrain:\n  lr: 1.0e-3\n  micro_batch_size: 2\nloss:\n  objective: ce\n")
    config = load_config(
        path,
        ["train.lr=1e-4", "data.formats=zero_shot_cot,in_context_cot", "lora.enabled=yes", "train.report_to=tensorboard"],
        flags={"out": (Path("runs/b"), "--out"), "data.path": (None, "--data")},
    )
    assert config.train.lr == 1e-4  # override beats file ("1e-4" is a string to YAML 1.1; coerced)
    assert config.train.micro_batch_size == 2  # from the file
    assert config.loss.objective == "ce"
    assert config.out == Path("runs/b")  # flag beats file
    assert config.data.path is None  # an unset flag changes nothing
    assert config.data.formats == ("zero_shot_cot", "in_context_cot")
    assert config.lora.enabled is True
    assert config.train.report_to == ("tensorboard",)


def test_unknown_key_names_key_file_and_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1.0e-3\n  warmup_step: 5\n")
    with pytest.raises(CotspecError) as err:
        load_config(path)
    message = str(err.value)
    assert message == f"{path}:3: unknown key 'train.warmup_step'; did you mean 'train.warmup_steps'?"
    with pytest.raises(CotspecError, match=r"^unknown key 'trian'; did you mean 'train'\?"):
        load_config(None, ["trian.lr=1"])
    with pytest.raises(CotspecError, match=r"unknown key 'zzz'; known keys: out, teacher, data, student, loss, lora, train, eval"):
        load_config(None, ["zzz=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=fast", "train.lr: must be a number, got 'fast'"),
        ("train.max_steps=2.5", "train.max_steps: must be an integer, got 2.5"),
        ("train.resume=maybe", "train.resume: must be true or false, got 'maybe'"),
        ("loss.objective=mse", "loss.objective: must be one of kd, ce; got 'mse'"),
        ("train=3", "train: is a section"),
        ("train.micro_batch_size=0", "train.micro_batch_size: must be >= 1, got 0"),
        ("train.micro_batch_size=3", "train.global_batch_size: 16 is not a multiple of train.micro_batch_size (3)"),
        ("loss.kd_weight=2", "loss.kd_weight: must be in [0, 1], got 2.0"),
        ("data.formats=zero_shot,in_context_cot", "data.formats: unknown format 'zero_shot'"),
        ("train.lr", "override 'train.lr' is not key=value"),
        # Not finite: an infinite or NaN learning rate turns every weight into NaN at the first step.
        ("train.lr=inf", "train.lr: must be a finite number, got 'inf'"),
        ("train.lr=.inf", "train.lr: must be a finite number, got inf"),
        ("train.lr=nan", "train.lr: must be a finite number, got 'nan'"),
        ("train.lr=-1e-4", "train.lr: must be > 0, got -0.0001"),
        ("train.epochs=inf", "train.epochs: must be a finite number"),
        ("train.max_grad_norm=nan", "train.max_grad_norm: must be a finite number"),
        ("lora.alpha=-inf", "lora.alpha: must be a finite number"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(CotspecError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_non_finite_number_in_a_file_names_file_line_and_key(tmp_path):
    path = write(tmp_path, "train:\n  seed: 1\n  lr: .nan\n")
    with pytest.raises(CotspecError, match=rf"^{path}:3: train.lr: must be a finite number, got nan$"):
        load_config(path)


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: [1\n  seed: 2\n")
    with pytest.raises(CotspecError, match=rf"^{path}:\d+: not valid YAML"):
        load_config(path)


def test_resolved_yaml_round_trips_with_a_comment_per_key(tmp_path):
    config = load_config(None, ["out=runs/x", "train.lr=2e-4", "loss.top_k=3", "data.weights=1,2,1,2"])
    text = to_yaml(config)
    assert load_config(write(tmp_path, text)) == config
    # Every key carries its docstring as a comment: the resolved file documents itself.
    lines = text.splitlines()
    keys = [i for i, line in enumerate(lines) if line.startswith("  ") and not line.strip().startswith("#")]
    assert all(lines[i - 1].strip().startswith("#") for i in keys)


def test_every_field_has_help():
    rows = help_lines()
    assert len(rows) == 1 + sum(len(fields(cls)) for cls in SECTIONS.values())
    assert [key for key, _, _ in rows][:2] == ["out", "teacher.model"]
    assert all(doc for _, _, doc in rows), [key for key, _, doc in rows if not doc]


def test_resume_compatibility_ignores_how_long_and_where():
    base = flatten(load_config(None, ["out=a", "train.max_steps=10"]))
    longer = flatten(load_config(None, ["out=b", "train.max_steps=20", "train.log_every=1"]))
    assert differing_keys(base, longer) == []
    changed = flatten(load_config(None, ["out=a", "train.lr=1e-3"]))
    assert differing_keys(base, changed) == ["train.lr"]


def test_out_is_required_only_to_run():
    assert DistillConfig().out is None
    with pytest.raises(CotspecError, match="out: is not set"):
        DistillConfig().require_out()


def test_build_settings_have_one_home_and_keep_their_data_keys(tmp_path):
    from cotspec.formats.config import BuildConfig, BuildSettings
    from cotspec.fieldhelp import field_docs
    from cotspec.distill.config import DataConfig

    config = load_config(None, ["data.gold=true", "data.formats=zero_shot_cot", "data.limit=5", "data.seed=3"])
    assert issubclass(DataConfig, BuildSettings) and issubclass(BuildConfig, BuildSettings)
    build = BuildConfig(out=tmp_path / "data", **config.data.build_settings())
    assert build.to_json() == config.data.to_json()
    # The same docs (and so the same --help and YAML comments) as `cotspec build`'s flags.
    assert field_docs(DataConfig)["weights"] == field_docs(BuildConfig)["weights"]
    with pytest.raises(CotspecError, match=r"^data.weights: has 2 values but data.formats names 1 formats"):
        load_config(None, ["data.formats=zero_shot_cot", "data.weights=1,2"])


def test_pipeline_sections_teacher_and_eval_load_and_round_trip(tmp_path):
    path = write(tmp_path, "teacher:\n  model: t\n  store: runs/t.db\n  n: 4\neval:\n  model: s\n  out: runs/e\n")
    config = load_config(path)
    assert config.teacher.n == 4 and config.teacher.backend == "transformers" and config.eval.out == Path("runs/e")
    assert load_config(write(tmp_path, to_yaml(config))) == config
    with pytest.raises(CotspecError, match=rf"^{path}:4: teacher.n: must be >= 1, got 0$"):
        load_config(write(tmp_path, "teacher:\n  model: t\n  store: runs/t.db\n  n: 0\n"))
    # A pipeline section never blocks resuming a training run.
    assert differing_keys(flatten(config), flatten(load_config(None))) == []
