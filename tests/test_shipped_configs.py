"""Every config shipped under configs/ loads, prints and means what its comments say (no network, no GPU).

cotspec configs (the `cotspec train` schema) load with `cotspec.distill.config.load_config`, print with
`cotspec train --print-config` and read back equal; accelerate configs parse as accelerate's own. The
paper's recipes (configs/paper/) are checked against the settings of Fu et al.'s code
(FranxYao/FlanT5-CoT-Specialization), and the command lines in their headers name files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cotspec.distill.config import PIPELINE_ONLY_SECTIONS, DistillConfig, load_config, to_yaml
from cotspec.formats.templates import FORMATS

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
ACCELERATE = CONFIGS / "accelerate"
TRAIN_SECTIONS = {"out", "teacher", "data", "student", "loss", "lora", "train", "eval"}

ALL = sorted(CONFIGS.rglob("*.yaml"))
COTSPEC = [p for p in ALL if ACCELERATE not in p.parents]


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def _top_keys(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def test_configs_are_found():
    assert {"distill-gold.yaml", "distill-kd.yaml"} <= {p.name for p in COTSPEC}
    assert {f"paper/flan-t5-{s}.yaml" for s in ("base", "large", "xl", "xxl")} <= {_id(p) for p in COTSPEC}
    assert {"ddp.yaml", "fsdp.yaml", "deepspeed-zero3.yaml"} <= {p.name for p in ACCELERATE.glob("*.yaml")}


@pytest.mark.parametrize("path", COTSPEC, ids=_id)
def test_cotspec_config_loads_prints_and_reads_back(path, run_cli, tmp_path):
    if "select" in _top_keys(path):  # `cotspec run` only (its eval section is the pipeline's): tests/pipeline
        pytest.skip(f"{_id(path)} is a `cotspec run` config; tests/pipeline dry-runs it")
    assert _top_keys(path) - TRAIN_SECTIONS <= set(PIPELINE_ONLY_SECTIONS)
    config = load_config(path)
    assert isinstance(config, DistillConfig)
    result = run_cli("train", "--config", path, "--print-config")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == to_yaml(config)
    printed = tmp_path / "printed.yaml"
    printed.write_text(result.stdout, encoding="utf-8")
    assert load_config(printed) == config


@pytest.mark.parametrize("path", sorted(ACCELERATE.glob("*.yaml")), ids=_id)
def test_accelerate_config_parses_and_leaves_precision_to_cotspec(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.mixed_precision == "no"  # train.precision decides
    assert config.num_machines == 1 and not config.use_cpu


# --- the paper's recipes ------------------------------------------------------------------------------

# (in-context CoT, in-context answer, zero-shot CoT, zero-shot answer) micro-batch sizes and gradient
# accumulation of the paper's code: src/conf/batch_size/{250m,780m,3b,11b}.yaml, readme.md,
# experiments.md and experiments_11b.md (grad_accum_steps 3, 20, 30, 20).
PAPER = {
    "base": ((25, 35, 40, 60), 3),
    "large": ((8, 12, 18, 30), 20),
    "xl": ((2, 10, 8, 20), 30),
    "xxl": ((2, 10, 8, 20), 20),
}
ORDER = ("in_context_cot", "in_context_answer", "zero_shot_cot", "zero_shot_answer")


def _processes(text: str) -> int:
    """GPUs of the header's first launch command (1 without accelerate)."""
    launch = next(line for line in text.splitlines() if ("accelerate launch" in line or "cotspec train" in line))
    found = re.search(r"--num_processes (\d+)", launch)
    return int(found.group(1)) if found else 1


@pytest.mark.parametrize("size", list(PAPER))
def test_paper_recipe_has_the_settings_of_the_papers_code(size):
    path = CONFIGS / "paper" / f"flan-t5-{size}.yaml"
    text = path.read_text(encoding="utf-8")
    config = load_config(path)
    micro, accumulation = PAPER[size]

    assert config.student.model == f"google/flan-t5-{size}"
    # One format per optimizer step, each format's step the paper's micro-batch x accumulation rows.
    train = config.train
    assert train.batching == "per-format" and train.global_batch_size is None
    processes = _processes(text)
    for fmt, rows in zip(ORDER, micro):
        assert train.micro_batch_size_of(fmt) == rows
        assert train.rows_per_step(fmt, processes=processes) == rows * accumulation, fmt
    assert set(train.micro_batch_size_per_format) == set(FORMATS)
    assert (train.lr, train.warmup_steps, train.lr_schedule) == (5e-4, 10, "cosine")
    assert train.optim.startswith("adamw") and train.precision == "bf16-mixed"
    assert train.save_total_limit is None  # every checkpoint stays for selection

    # Distribution matching: forward KL to the teacher's top-5 as given.
    loss = config.loss
    assert (loss.objective, loss.divergence, loss.forward_mode, loss.kd_weight) == ("kd", "forward_kl", "unnormalized", 1.0)

    # The teacher: an OpenAI-compatible endpoint, complex 8-shot prompt, T=0.5, 40 chains, 256 tokens, top-5.
    teacher = config.teacher
    assert teacher.backend == "openai" and teacher.base_urls and teacher.task == "gsm8k" and teacher.split == "train"
    assert (teacher.exemplars, teacher.shots, teacher.temperature, teacher.n) == ("complex", 8, 0.5, 40)
    assert (teacher.max_new_tokens, teacher.top_logprobs) == (256, 5)

    # The data: the teacher's correct chains in all four formats, 4 in-context exemplars.
    data = config.data
    assert data.store == teacher.store and set(data.formats) == set(FORMATS) and data.shots == 4
    assert data.max_per_question is None and not data.gold


def test_only_the_xxl_recipe_shards_with_deepspeed():
    for size in PAPER:
        text = (CONFIGS / "paper" / f"flan-t5-{size}.yaml").read_text(encoding="utf-8")
        assert ("deepspeed-zero3.yaml" in text) == (size == "xxl"), size


@pytest.mark.parametrize("path", sorted((CONFIGS / "paper").glob("*.yaml")), ids=_id)
def test_paper_recipe_header_names_what_it_reproduces_and_files_that_exist(path):
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "Fu et al." in text and "Hardware:" in text and "Sources" in text
    assert "FranxYao/FlanT5-CoT-Specialization" in text
    commands = re.findall(r"--config(?:_file)? (\S+)", text)
    assert any("configs/paper/" in c for c in commands)
    for relative in commands:
        assert (REPO_ROOT / relative).is_file(), f"{_id(path)} names {relative}, which does not exist"
