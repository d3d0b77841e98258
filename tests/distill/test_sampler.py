"""Data order: whole optimizer steps of one format, rows of like length together, deterministic; per-format
micro-batch sizes (the paper's recipes) end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cotspec.distill.run import run_training
from cotspec.distill.sampler import GroupedLengthSampler, MicroBatchSampler
from cotspec.distill.trainer import DistillTrainer
from distill_support import step_losses


def rows(seed: int = 0):
    rng = np.random.default_rng(seed)
    formats = ["zero_shot_cot"] * 70 + ["zero_shot_answer"] * 45 + ["in_context_cot"] * 13
    lengths = [int(x) for x in rng.integers(20, 400, len(formats))]
    return lengths, formats


def padding_fraction(lengths, order, micro: int) -> float:
    padded = real = 0
    for start in range(0, len(order), micro):
        batch = [lengths[i] for i in order[start : start + micro]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1 - real / padded


def test_per_format_steps_are_homogeneous_full_and_cover_every_row():
    lengths, formats = rows()
    sampler = GroupedLengthSampler(lengths, formats, group_size=8, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) == 8 * (9 + 6 + 2)  # each format rounded up to whole steps
    steps = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert all(len({formats[i] for i in step}) == 1 for step in steps)
    assert set(order) == set(range(len(lengths)))  # the fill repeats rows, it never drops one
    assert len({formats[step[0]] for step in steps[:6]}) > 1  # formats interleave over the epoch


def test_mixed_batching_ignores_formats():
    lengths, formats = rows()
    sampler = GroupedLengthSampler(lengths, None, group_size=8, seed=3)
    order = list(sampler)
    assert len(order) == 8 * 16 and set(order) == set(range(len(lengths)))
    steps = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert any(len({formats[i] for i in step}) > 1 for step in steps)


def test_length_grouping_removes_most_padding():
    lengths, formats = rows()
    grouped = list(GroupedLengthSampler(lengths, formats, group_size=8, seed=1))
    shuffled = list(GroupedLengthSampler(lengths, formats, group_size=8, seed=1, group_by_length=False))
    assert padding_fraction(lengths, grouped, micro=4) < 0.1 < 0.3 < padding_fraction(lengths, shuffled, micro=4)


def test_order_is_a_function_of_seed_and_epoch():
    lengths, formats = rows()
    a = GroupedLengthSampler(lengths, formats, group_size=8, seed=5)
    b = GroupedLengthSampler(lengths, formats, group_size=8, seed=5)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert list(GroupedLengthSampler(lengths, formats, group_size=8, seed=6)) != list(b)


# --- per-format micro-batch sizes (the paper's recipes) -------------------------------------------------


def test_per_format_group_sizes_give_each_format_steps_of_its_own_size():
    lengths, formats = rows()
    sizes = {"zero_shot_cot": 12, "zero_shot_answer": 20}  # in_context_cot keeps group_size 8
    sampler = GroupedLengthSampler(lengths, formats, group_size=8, seed=3, group_sizes=sizes)
    groups = sampler.groups()
    assert sampler.num_groups() == len(groups) == 6 + 3 + 2  # ceil(70/12), ceil(45/20), ceil(13/8)
    for group in groups:
        (fmt,) = {formats[i] for i in group}
        assert len(group) == sizes.get(fmt, 8)
    order = list(sampler)
    assert len(order) == len(sampler) == 6 * 12 + 3 * 20 + 2 * 8
    assert set(order) == set(range(len(lengths)))


def test_micro_batches_cut_each_step_into_equal_micro_batches_of_its_format():
    lengths, formats = rows()
    micro = {"zero_shot_cot": 4, "zero_shot_answer": 10, "in_context_cot": 2}
    per_step = 3  # accumulation steps x processes
    inner = GroupedLengthSampler(lengths, formats, group_size=6, seed=2, group_sizes={f: m * per_step for f, m in micro.items()})
    batches = MicroBatchSampler(inner, per_step)
    out = list(batches)
    assert len(out) == len(batches) == inner.num_groups() * per_step
    steps = [out[i : i + per_step] for i in range(0, len(out), per_step)]
    for step, group in zip(steps, inner.groups()):
        fmt = formats[step[0][0]]
        assert all(len(b) == micro[fmt] and {formats[i] for i in b} == {fmt} for b in step)
        assert sum(step, []) == group.tolist()  # the group, in order: like lengths share micro-batches
    assert not hasattr(batches, "batch_size")  # so accelerate passes batches of every size through
    batches.set_epoch(1)
    assert inner.epoch == 1 and list(batches) != out


def test_accelerate_deals_each_process_its_share_of_every_step():
    """What `accelerator.prepare` does with the batch sampler on 2 processes: micro-batch k goes to
    process k % 2, so each process gets `accumulation` micro-batches of every step, of that step's format."""
    from accelerate.data_loader import BatchSamplerShard

    lengths, formats = rows()
    micro, accumulation, processes = {"zero_shot_cot": 3, "zero_shot_answer": 5, "in_context_cot": 1}, 2, 2
    per_step = accumulation * processes
    inner = GroupedLengthSampler(lengths, formats, group_size=4, seed=0, group_sizes={f: m * per_step for f, m in micro.items()})
    shards = [list(BatchSamplerShard(MicroBatchSampler(inner, per_step), processes, rank)) for rank in range(processes)]
    assert len(shards[0]) == len(shards[1]) == inner.num_groups() * accumulation
    for step, group in enumerate(inner.groups()):
        fmt = formats[group[0]]
        mine = [shard[step * accumulation : (step + 1) * accumulation] for shard in shards]
        assert all(len(b) == micro[fmt] for part in mine for b in part)
        assert sorted(i for part in mine for b in part for i in b) == sorted(group.tolist())


def test_group_sizes_need_per_format_batching():
    lengths, formats = rows()
    with pytest.raises(ValueError, match="per format"):
        GroupedLengthSampler(lengths, None, group_size=8, group_sizes={"zero_shot_cot": 4})


class _MicroBatchSpy:
    """Records the rows of every micro-batch the trainer computes a loss on."""

    def __init__(self, monkeypatch):
        self.sizes: list[int] = []
        original = DistillTrainer.compute_loss

        def compute_loss(trainer, model, inputs, *args, **kwargs):
            self.sizes.append(int(inputs["labels"].shape[0]))
            return original(trainer, model, inputs, *args, **kwargs)

        monkeypatch.setattr(DistillTrainer, "compute_loss", compute_loss)


def _per_format(answer: int, cot: int, accumulation: int) -> tuple[str, ...]:
    return (
        "train.global_batch_size=null",
        f"train.gradient_accumulation_steps={accumulation}",
        f"train.micro_batch_size_per_format={{zero_shot_answer: {answer}, zero_shot_cot: {cot}}}",
    )


def test_per_format_micro_batches_train_alike_however_each_step_is_split(
    tiny_llama_dir, kd_data, train_config, tmp_path, monkeypatch
):
    """Steps of 8 zero-shot-answer rows and 4 zero-shot-CoT rows, as 4 x (2 | 1), 2 x (4 | 2) or 1 x (8 | 4)
    micro-batches: same per-step losses (1e-5), so the loss is normalized over each whole step; and every
    step is one format with that format's micro-batch size."""
    spy = _MicroBatchSpy(monkeypatch)
    runs = {}
    for accumulation, (answer, cot) in {4: (2, 1), 2: (4, 2), 1: (8, 4)}.items():
        spy.sizes.clear()
        out = tmp_path / f"acc{accumulation}"
        summary = run_training(
            train_config(tiny_llama_dir, kd_data, *_per_format(answer, cot, accumulation), "train.max_steps=5", out=out)
        )
        # 12 rows of each format: ceil(12 / 8) = 2 answer steps and 12 / 4 = 3 CoT steps per epoch.
        assert summary["steps"] == 5 and summary["steps_per_epoch"] == 5
        steps = [spy.sizes[i : i + accumulation] for i in range(0, len(spy.sizes), accumulation)]
        assert len(steps) == 5 and sorted(step[0] for step in steps) == [cot] * 3 + [answer] * 2
        assert all(len(set(step)) == 1 for step in steps)
        runs[accumulation] = step_losses(out)
    for accumulation in (2, 1):
        assert runs[accumulation].keys() == runs[4].keys() == {1, 2, 3, 4, 5}
        for step in runs[4]:
            assert runs[accumulation][step] == pytest.approx(runs[4][step], abs=1e-5)


def test_equal_per_format_sizes_train_exactly_as_one_global_batch(tiny_llama_dir, kd_data, train_config, tmp_path):
    """Per-format sizes that are all the same take the MicroBatchSampler path yet train exactly as the
    uniform global batch does (same steps, same order, same losses)."""
    run_training(train_config(tiny_llama_dir, kd_data, "train.max_steps=4", out=tmp_path / "uniform"))
    run_training(train_config(tiny_llama_dir, kd_data, *_per_format(2, 2, 2), "train.max_steps=4", out=tmp_path / "per-format"))
    uniform, per_format = step_losses(tmp_path / "uniform"), step_losses(tmp_path / "per-format")
    assert uniform.keys() == per_format.keys() == {1, 2, 3, 4}
    for step in uniform:
        assert per_format[step] == pytest.approx(uniform[step], abs=1e-6)


def test_two_processes_with_per_format_micro_batches_match_one(tiny_llama_dir, kd_data, train_config, tmp_path):
    """accelerate launch with 2 CPU processes (gloo): each step's micro-batches dealt out over both, of
    the step's format and size, train as one process with twice the accumulation does (1e-5)."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from cotspec.distill.config import flatten

    steps = ("train.max_steps=3", "train.save_every=3")
    run_training(train_config(tiny_llama_dir, kd_data, *_per_format(2, 1, 4), *steps, out=tmp_path / "one"))
    two = train_config(tiny_llama_dir, kd_data, *_per_format(2, 1, 2), *steps, out=tmp_path / "two")
    overrides = [f"{k}={'null' if v is None else v}" for k, v in flatten(two).items() if v != []]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "cotspec.cli.main", "train", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"the 2-process run timed out; stderr tail: {stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    one, two_losses = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert one.keys() == two_losses.keys() == {1, 2, 3}
    for step in one:
        assert two_losses[step] == pytest.approx(one[step], abs=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("train.gradient_accumulation_steps=3",), r"^train.gradient_accumulation_steps: and train.global_batch_size \(16\) both size"),
        (("train.global_batch_size=null",), r"^train.global_batch_size: is null: set it, or size the step with train.gradient_accumulation_steps$"),
        (("train.micro_batch_size_per_format={zero_shot_cot: 2}",), r"^train.micro_batch_size_per_format: needs train.gradient_accumulation_steps"),
        ((*_per_format(2, 1, 3), "train.batching=mixed"), r"^train.micro_batch_size_per_format: needs train.batching per-format"),
        ((*_per_format(2, 0, 3),), r"^train.micro_batch_size_per_format.zero_shot_cot: must be >= 1, got 0$"),
        (("train.global_batch_size=null", "train.gradient_accumulation_steps=3", "train.micro_batch_size_per_format={cot: 2}"),
         r"^train.micro_batch_size_per_format: unknown format 'cot'; choose from zero_shot_answer, "),
    ],
)
def test_per_format_sizes_and_accumulation_are_checked_by_key(overrides, message):
    from cotspec.distill.config import load_config
    from cotspec.errors import CotspecError

    with pytest.raises(CotspecError, match=message):
        load_config(None, list(overrides))


def test_rows_per_step_and_accumulation_of_both_ways_to_size_a_step():
    from cotspec.distill.config import load_config
    from cotspec.distill.run import training_arguments

    per_format = load_config(None, [*_per_format(2, 1, 3), "train.micro_batch_size=5"]).train
    assert per_format.rows_per_step("zero_shot_answer") == 6 and per_format.rows_per_step("zero_shot_cot", processes=2) == 6
    assert per_format.rows_per_step("in_context_cot") == 15  # not listed: micro_batch_size
    assert per_format.accumulation_steps(processes=4) == 3
    uniform = load_config(None, ["train.global_batch_size=16", "train.micro_batch_size=4"]).train
    assert uniform.rows_per_step("zero_shot_cot") == 16 and uniform.accumulation_steps(processes=2) == 2
    config = load_config(None, [*_per_format(2, 1, 3), "out=o"])
    assert training_arguments(config, Path("o"))["gradient_accumulation_steps"] == 3
