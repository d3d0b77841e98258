"""Shared pieces of the `cotspec run` tests: a tiny student, a short teacher prompt, a config writer.

Every run here is tiny: a random 2-layer Llama student on ByT5 bytes, the real llama.cpp teacher (the
session's `llama_server_process`, or `teacher.server: embedded`) on 2 questions x 2 chains of 24
tokens, gold chains, 3 training steps with a checkpoint at each, dev and test slices of 2 questions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.prompts import PROMPT_FILE
from support.tiny_models import save_model_dir, tiny_llama


@pytest.fixture(scope="session")
def pipeline_student(tmp_path_factory) -> Path:
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    model = tiny_llama(tokenizer, hidden_size=32, intermediate_size=64, initializer_range=0.02)
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("pipeline-student"))


@pytest.fixture(scope="session")
def pipeline_prompt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline-prompt") / "prompt.txt"
    path.write_text(PROMPT_FILE)
    return path


def settings(student: Path, prompt: Path, data_dir: Path, cache: Path, teacher: dict | None) -> dict:
    """The tiny run's config as a YAML tree; `teacher` adds to the teacher section (None: no teacher)."""
    tree = {
        "data_dir": str(data_dir),
        "teacher": None if teacher is None else {
            "n": 2, "limit": 2, "max_new_tokens": 24, "prompt_file": str(prompt), "concurrency": 1, **teacher,
        },
        "data": {"gold": True, "limit": 4, "max_length": 512, "formats": "zero_shot_cot,zero_shot_answer",
                 "cache_dir": str(cache)},
        "student": {"model": str(student)},
        "train": {"max_steps": 3, "save_every": 1, "global_batch_size": 2, "micro_batch_size": 2,
                  "precision": "fp32", "warmup_steps": 0, "log_every": 1, "optim": "adamw_torch"},
        "select": {"in_distribution_size": 2, "ood_size": 2},
        "eval": {"tasks": "gsm8k,svamp,bbh:navigate", "limit": 2, "modes": "zero-shot", "max_new_tokens": 8,
                 "batch_size": 8},
    }
    return tree


def write_config(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path
