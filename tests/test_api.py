"""The Python API (`cotspec.sample|build|train|evaluate`), each run for real on tiny inputs.

Sampling goes to the real llama.cpp server fixture (1 question, 1 chain of 8 tokens), the build uses
GSM8K's gold chains (4 questions), training takes one step of a tiny Llama on that build, and
evaluation scores the tiny model on 2 questions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from support.tiny_models import single_torch_thread, tiny_llama_dir  # noqa: F401 (fixtures)

import cotspec
from cotspec.errors import ConfigError, CotspecError

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PROMPT = """\
Question: Tom has 3 apples and buys 2 more. How many apples does he have?
Let's think step by step
3 + 2 = 5.
The answer is 5
"""


@pytest.fixture(scope="module")
def gold_data(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("api-build") / "data"
    return out, cotspec.build(gold=True, limit=4, formats="zero_shot_cot", out=str(out), data_dir=data_dir)


def test_import_cotspec_is_cheap():
    code = (
        "import sys, cotspec\n"
        "assert callable(cotspec.sample) and callable(cotspec.evaluate)\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import cotspec.evaluate.config\n"
        "assert callable(cotspec.evaluate), 'importing the evaluate package must keep cotspec.evaluate callable'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_build_from_keywords(gold_data):
    out, data = gold_data
    assert data["train"].num_rows == 4
    assert set(data["train"]["format"]) == {"zero_shot_cot"}
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["config"]["gold"] is True and manifest["config"]["limit"] == 4


def test_config_object_or_keywords_not_both(tmp_path, data_dir):
    config = cotspec.BuildConfig(gold=True, limit=4, out=tmp_path / "d", data_dir=data_dir)
    with pytest.raises(CotspecError, match=r"^cotspec.build: pass a BuildConfig or keyword settings, not both"):
        cotspec.build(config, limit=2)
    with pytest.raises(CotspecError, match=r"^cotspec.evaluate: config must be a EvalConfig, got BuildConfig"):
        cotspec.evaluate(config)
    with pytest.raises(CotspecError, match=r"unknown key 'limt'; did you mean 'limit'\?"):
        cotspec.build(gold=True, limt=4, out=tmp_path / "d")
    with pytest.raises(ConfigError) as err:
        cotspec.evaluate(model="m", tasks="gsm8k", out=tmp_path / "e", limit=0)
    assert err.value.field == "limit" and str(err.value) == "limit: must be >= 1, got 0"
    with pytest.raises(ConfigError, match=r"^out: is required"):
        cotspec.evaluate(model="m", tasks="gsm8k")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_evaluate_returns_the_summary_and_resumes(tiny_llama_dir, tmp_path, data_dir):
    fields = dict(model=str(tiny_llama_dir), tasks=["gsm8k"], mode="zero-shot", limit=2, max_new_tokens=4,
                  batch_size=2, out=tmp_path / "eval", data_dir=data_dir)  # fmt: skip
    summary = cotspec.evaluate(**fields)
    assert summary["tasks"]["gsm8k"]["n"] == 2
    assert summary == json.loads((tmp_path / "eval" / "summary.json").read_text())


def test_evaluate_takes_a_config_object(tiny_llama_dir, tmp_path, data_dir):
    from cotspec.tasks.base import Mode

    config = cotspec.EvalConfig(model=str(tiny_llama_dir), tasks=("gsm8k",), mode=Mode.ZERO_SHOT, limit=2,
                                max_new_tokens=4, batch_size=2, out=tmp_path / "eval", data_dir=data_dir)  # fmt: skip
    first = cotspec.evaluate(config)
    lines = (tmp_path / "eval" / "predictions" / "gsm8k.jsonl").read_text().splitlines()
    assert first["tasks"]["gsm8k"]["n"] == 2 and len(lines) == 2
    assert cotspec.evaluate(replace(config, limit=1))["tasks"]["gsm8k"]["n"] == 1  # resumed: nothing generated


def test_train_one_step_with_section_keywords(tiny_llama_dir, gold_data, tmp_path):
    data, _ = gold_data
    summary = cotspec.train(
        out=tmp_path / "run",
        student={"model": str(tiny_llama_dir)},
        data__path=data,
        data__cache_dir=tmp_path / "cache",
        data__max_length=512,
        loss__objective="ce",
        train__precision="fp32",
        train__max_steps=1,
        train__warmup_steps=0,
        train__global_batch_size=2,
        train__micro_batch_size=2,
        overrides={"train.log_every": 1},
    )
    assert summary is not None and summary["steps"] == 1
    assert summary == json.loads((tmp_path / "run" / "train_summary.json").read_text())
    # A finished run returns its stored summary; a DistillConfig object with keywords is refused.
    config = cotspec.DistillConfig(out=tmp_path / "run")
    with pytest.raises(CotspecError, match="pass a DistillConfig or keyword settings, not both"):
        cotspec.train(config, train__max_steps=2)


def test_train_errors_name_the_keyword(tmp_path):
    with pytest.raises(CotspecError, match=r"^train__lr: must be a number, got 'fast'$"):
        cotspec.train(out=tmp_path / "run", train__lr="fast")
    with pytest.raises(CotspecError, match=r"unknown key 'train\.lrr'"):
        cotspec.train(out=tmp_path / "run", overrides=["train.lrr=1"])
    assert not (tmp_path / "run").exists()


def test_sample_against_the_real_server(llama_server, tmp_path, data_dir):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    fields = dict(tasks="gsm8k", limit=1, n=1, max_new_tokens=8, top_logprobs=2, seed=1, concurrency=1,
                  model=llama_server.model_name, base_urls=llama_server.base_url, prompt_file=prompt,
                  store=tmp_path / "teacher.db", data_dir=data_dir)  # fmt: skip
    report = cotspec.sample(**fields)
    assert (report.questions, report.wanted, report.already_stored, report.written) == (1, 1, 0, 1)
    again = cotspec.sample(**fields)
    assert (again.already_stored, again.written) == (1, 0)
    from cotspec.store import SampleStore

    with SampleStore.open(tmp_path / "teacher.db") as store:
        (chain,) = list(store.iter_samples())
    assert chain.tokens and chain.top_logprobs is not None
