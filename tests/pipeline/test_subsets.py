"""Which questions a run's evaluations ask: seeded subsets, per-task sizes, the OOD slice left out."""

from __future__ import annotations

import pytest

from cotspec.errors import ConfigError
from cotspec.distill.config import DataConfig
from cotspec.pipeline.config import EvalSection, PipelineConfig, SelectConfig
from cotspec.pipeline import subsets
from cotspec.tasks import get_task


def test_a_seeded_subset_is_stable_and_in_file_order():
    items = list(range(100))
    first = subsets.seeded_subset(items, 10, 0, "gsm8k")
    assert first == subsets.seeded_subset(items, 10, 0, "gsm8k")
    assert first == sorted(first) and len(set(first)) == 10
    assert first != subsets.seeded_subset(items, 10, 1, "gsm8k")
    assert first != subsets.seeded_subset(items, 10, 0, "svamp")


def test_per_task_limits_override_the_common_limit_and_the_dev_slice_is_left_out(data_dir):
    config = PipelineConfig(
        data=DataConfig(gold=True),
        select=SelectConfig(ood="svamp", ood_size=20),
        eval=EvalSection(tasks=("gsm8k", "svamp", "bbh"), limit=30, bbh_limit=5, limits={"gsm8k": 50}),
    )


    excluded = subsets.ood_slice_ids(config, data_dir)
    slice_ids = excluded["svamp"]
    assert len(slice_ids) == 20
    choose = subsets.test_selector(config, excluded)
    sizes = {}
    for name in ("gsm8k", "svamp", "bbh:navigate"):
        task = get_task(name)
        chosen = choose(task, task.load(data_dir, task.default_split))
        sizes[name] = len(chosen)
        if name == "svamp":
            assert not set(slice_ids) & {ex.id for ex in chosen}
    assert sizes == {"gsm8k": 50, "svamp": 30, "bbh:navigate": 5}


@pytest.mark.parametrize("limits", [{"bbh": 3}, {"asdiv": 3}, {"gsm8k": 0}])
def test_a_bad_per_task_limit_names_its_key(limits):
    with pytest.raises(ConfigError) as caught:
        EvalSection(tasks=("gsm8k", "svamp", "bbh"), limits=limits)
    assert caught.value.field == f"limits.{next(iter(limits))}"


@pytest.mark.parametrize("field, value", [("max_new_tokens", 0), ("batch_size", 0), ("dtype", "float8"), ("shots", -1)])
def test_eval_settings_after_the_limits_are_still_checked(field, value):
    with pytest.raises(ConfigError) as caught:
        EvalSection(limits={"gsm8k": 5}, **{field: value})
    assert caught.value.field == field


def test_a_bad_per_task_limit_is_one_line_from_the_cli(run_cli, tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "cpu-gsm8k-smollm2.yaml"
    result = run_cli("run", config, "--out", tmp_path / "run", "--dry-run", "eval.limits={bbh: 3}")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: eval.limits.bbh"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
