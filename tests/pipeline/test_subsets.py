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
