"""The teacher sampler: the answer-line cut, question selection, and resumable sampling into a store.

Sampling runs against the real llama.cpp server (SmolLM2-135M) behind the counting proxy, so "only the
missing chains are requested" is checked on the wire.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.prompts import PROMPT_FILE

from cotspec.align.pieces import TokenStyle, piece_bytes
from cotspec.backends.base import Completion, RequestsFromGenerate
from cotspec.errors import ConfigError, CotspecError
from cotspec.store import SampleStore
from cotspec.tasks import PromptSpec, get_task, gsm8k_dev_ids
from cotspec.teacher.config import SampleConfig
from cotspec.teacher.sampler import cut_after_answer_line, make_teacher_backend, run_sampling, select_questions, sha256


def _completion(tokens: list[str], text: str | None = None, finish: str = "length") -> Completion:
    top = [[(t, -0.25), ("x", -2.0)] for t in tokens]
    return Completion(
        text="".join(tokens) if text is None else text,
        finish_reason=finish,
        prompt_tokens=50,
        completion_tokens=len(tokens),
        tokens=list(tokens),
        top_logprobs=top,
    )


# ---- the answer-line cut ---------------------------------------------------------------------------


def test_cut_keeps_tokens_through_the_answer_line():
    tokens = ["3", " +", " 2", " =", " 5", ".", "\n", "The", " answer", " is", " 5", "\n", "\n", "Question", ":"]
    cut = cut_after_answer_line(_completion(tokens), "The answer is")
    assert cut.text == "3 + 2 = 5.\nThe answer is 5"
    assert cut.tokens == tokens[:11] and len(cut.top_logprobs) == 11 and cut.completion_tokens == 11
    assert cut.finish_reason == "stop"
    assert cut.top_logprobs[10] == [(" 5", -0.25), ("x", -2.0)]


def test_cut_keeps_a_token_that_straddles_the_line_end_whole():
    tokens = ["So", " the", " answer", " is", " 18", ".\n\n", "Q", ":"]
    cut = cut_after_answer_line(_completion(tokens), "The answer is")  # case-insensitive
    assert cut.tokens == tokens[:6]
    assert cut.text == "So the answer is 18.\n\n" == "".join(cut.tokens)


def test_no_cut_without_a_following_line_or_marker():
    for tokens in (["The", " answer", " is", " 7"], ["no", " marker", "\n", "here"]):
        original = _completion(tokens)
        assert cut_after_answer_line(original, "The answer is") is original
    assert cut_after_answer_line(_completion(["The answer is 1", "\n", "x"]), "") .text == "The answer is 1\nx"


def test_cut_counts_bytes_of_partial_utf8_tokens():
    # "€" split over two tokens in OpenAI's bytes: spelling; the text is the decoded string.
    tokens = ["It", " costs", " ", "bytes:\\xe2\\x82", "bytes:\\xac", "5", "\n"]
    tokens += ["The", " answer", " is", " 5", "\n", "more"]
    text = "It costs €5\nThe answer is 5\nmore"
    assert b"".join(piece_bytes(t, TokenStyle.TEXT) for t in tokens) == text.encode()
    cut = cut_after_answer_line(_completion(tokens, text=text), "The answer is")
    assert cut.text == "It costs €5\nThe answer is 5"
    assert cut.tokens == tokens[:11]


def test_cut_when_text_and_tokens_disagree_cuts_both_at_the_answer_line():
    tokens = ["A", "\ufffd", "\n", "The", " answer", " is", " 2", "\n", "junk"]
    text = "A\u00e9\nThe answer is 2\njunk"  # the server's text has the real character
    cut = cut_after_answer_line(_completion(tokens, text=text), "The answer is")
    assert cut.text == "A\u00e9\nThe answer is 2"
    assert cut.tokens == tokens[:7]


def test_cut_without_tokens_cuts_the_text_only():
    plain = Completion(text="1 + 1 = 2\nThe answer is 2\nQuestion: next", finish_reason="length",
                       prompt_tokens=10, completion_tokens=14)
    cut = cut_after_answer_line(plain, "The answer is")
    assert (cut.text, cut.finish_reason, cut.tokens) == ("1 + 1 = 2\nThe answer is 2", "stop", None)
    assert cut.completion_tokens == 14  # the teacher's count: without tokens there is nothing to recount


# ---- which questions ----------------------------------------------------------------------------------


def _config(tmp_path: Path, **overrides) -> SampleConfig:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_FILE)
    fields = dict(store=tmp_path / "run.db", base_urls=("http://127.0.0.1:9/v1",), model="teacher",
                  prompt_file=prompt, max_new_tokens=12, n=2, limit=2)
    fields.update(overrides)
    return SampleConfig(**fields)


def test_dev_questions_are_left_out_unless_asked(tmp_path, data_dir):
    task = get_task("gsm8k")
    dev = gsm8k_dev_ids(data_dir)
    train = task.load(data_dir, "train")
    default = select_questions(task, _config(tmp_path, limit=None), data_dir, gsm8k_dev_ids)
    assert len(default) == len(train) - len(dev) == 7273
    assert not dev & {ex.id for ex in default}
    everything = select_questions(task, _config(tmp_path, limit=None, include_dev=True), data_dir, gsm8k_dev_ids)
    assert len(everything) == len(train)
    # --limit counts after the exclusion: the first dev question (line 9) is skipped, not counted.
    first = select_questions(task, _config(tmp_path, limit=12), data_dir, gsm8k_dev_ids)
    assert [ex.id for ex in first] == [ex.id for ex in train if ex.id not in dev][:12]
    assert "gsm8k/train/9" in dev and "gsm8k/train/9" not in {ex.id for ex in first}


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="temperature: must be > 0") as err:
        _config(tmp_path, temperature=0.0)
    assert err.value.field == "temperature"
    with pytest.raises(ConfigError, match="prompt_file: .*no such file") as err:
        _config(tmp_path, prompt_file=tmp_path / "absent.txt")
    assert err.value.field == "prompt_file"


def test_paper_prompt_is_the_default_for_gsm8k(tmp_path):
    config = SampleConfig(store=tmp_path / "r.db", base_urls=("http://x/v1",), model="m")
    assert config.exemplar_choice == ("complex", 8)
    server = dict(store=tmp_path / "r.db", base_urls=("http://x/v1",), model="m")
    assert SampleConfig(**server, exemplars="original").exemplar_choice == ("original", None)
    assert SampleConfig(**server, tasks=("svamp",)).exemplar_choice == (None, None)


# ---- sampling against the real server ---------------------------------------------------------------


def _through(proxy, config: SampleConfig) -> SampleConfig:
    return replace(config, base_urls=(proxy.base_url,), concurrency=2)


def _completions_calls(proxy) -> int:
    return sum(1 for e in proxy.events() if e.path.endswith("/completions"))


def test_sampling_resumes_asking_only_for_missing_chains(tmp_path, data_dir, llama_server, fault_proxy):
    proxy = fault_proxy(llama_server.base_url.removesuffix("/v1"), fault_rate=0.0)

    def config(n: int, limit: int) -> SampleConfig:
        return _through(proxy, _config(tmp_path, data_dir=data_dir, model=llama_server.model_name, n=n, limit=limit))

    first = run_sampling(config(n=1, limit=2), make_teacher_backend)
    assert (first.wanted, first.already_stored, first.written) == (2, 0, 2)
    assert _completions_calls(proxy) == 2

    more = run_sampling(config(n=2, limit=3), make_teacher_backend)
    assert (more.wanted, more.already_stored, more.written) == (6, 2, 4)
    assert _completions_calls(proxy) == 2 + 4  # exactly the 4 missing chains, nothing re-sent

    again = run_sampling(config(n=2, limit=3), make_teacher_backend)
    assert again.written == 0 and _completions_calls(proxy) == 6

    task = get_task("gsm8k")
    questions = {ex.id: ex for ex in select_questions(task, config(2, 3), data_dir, gsm8k_dev_ids)}
    prompter = task.make_prompter(data_dir, PromptSpec(exemplars=str(tmp_path / "prompt.txt"), shots=1))
    with SampleStore.open(tmp_path / "run.db") as store:
        samples = list(store.iter_samples())
        assert store.check_integrity() == 6
    pairs = sorted((s.question_id, s.sample_index) for s in samples)
    assert pairs == sorted((q, i) for q in questions for i in range(2))
    for s in samples:
        assert s.has_logprobs and len(s.tokens) == s.completion_tokens <= 12
        assert all(1 <= len(top) <= 5 for top in s.top_logprobs)
        # Stored text is exactly the stored tokens' text, and the score is the task's verdict on it.
        assert b"".join(piece_bytes(t, TokenStyle.TEXT) for t in s.tokens) == s.text.encode()
        assert s.extracted == task.extract(s.text)
        assert s.correct == task.is_correct(s.extracted, questions[s.question_id].answer)
        assert s.prompt_sha256 == sha256(prompter(questions[s.question_id]))
        assert s.prompt_tokens > 0


def test_a_store_from_another_temperature_is_refused_before_any_request(tmp_path, data_dir, llama_server, fault_proxy):
    proxy = fault_proxy(llama_server.base_url.removesuffix("/v1"), fault_rate=0.0)
    config = _through(proxy, _config(tmp_path, data_dir=data_dir, model=llama_server.model_name, n=1, limit=1))
    run_sampling(config, make_teacher_backend)
    calls = _completions_calls(proxy)
    with pytest.raises(CotspecError, match=r"temperature=0\.5 but this run has temperature=0\.9.*set `allow_mixed_runs`"):
        run_sampling(replace(config, temperature=0.9, n=2), make_teacher_backend)
    assert _completions_calls(proxy) == calls


class _GenerateOnly(RequestsFromGenerate):
    """The real OpenAI backend seen through `generate` alone, as a backend without a native
    `generate_requests` is: the default adapter then makes one call per missing chain index."""

    def __init__(self, inner):
        self._inner = inner
        self.name = inner.name
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per generate call

    def generate(self, prompts, params, on_tokens=None):
        self.calls.append((len(prompts), params.n))
        return self._inner.generate(prompts, params, on_tokens)

    def close(self):
        self._inner.close()


def test_backends_with_only_generate_get_one_call_per_missing_chain_index(
    tmp_path, data_dir, llama_server, fault_proxy
):
    proxy = fault_proxy(llama_server.base_url.removesuffix("/v1"), fault_rate=0.0)
    made: list[_GenerateOnly] = []

    def make(config):
        made.append(_GenerateOnly(make_teacher_backend(config)))
        return made[-1]

    def config(n: int, limit: int) -> SampleConfig:
        return _through(proxy, _config(tmp_path, data_dir=data_dir, model=llama_server.model_name, n=n, limit=limit))

    run_sampling(config(n=1, limit=1), make)
    report = run_sampling(config(n=2, limit=2), make)
    assert report.written == 3
    # Question 0 misses chain 1, question 1 misses chains 0 and 1: chain 0 for one prompt, chain 1 for two.
    assert made[-1].calls == [(1, 1), (2, 1)]
    assert _completions_calls(proxy) == 1 + 3
    with SampleStore.open(tmp_path / "run.db") as store:
        assert sorted((s.question_id, s.sample_index) for s in store.iter_samples(with_topk=False)) == [
            ("gsm8k/train/0", 0), ("gsm8k/train/0", 1), ("gsm8k/train/1", 0), ("gsm8k/train/1", 1),
        ]  # fmt: skip
        assert store.check_integrity() == 4


class _SeedEcho(RequestsFromGenerate):
    """A teacher whose chain is a function of its call's seed and the prompt's position: the same seed
    would give the same chain again. A fake, because the property under test is the seeds the sampler
    and the default adapter hand out, not what a model makes of them."""

    name = "seed-echo"

    def generate(self, prompts, params, on_tokens=None):
        for index in range(len(prompts)):
            text = f"draw {params.seed}/{index}\nThe answer is 5\n"
            yield index, [Completion(text=text, finish_reason="stop", prompt_tokens=9, completion_tokens=4)]

    def close(self):
        pass


def test_a_resumed_run_with_the_same_seed_draws_new_chains(tmp_path, data_dir):
    def run(n: int):
        return run_sampling(_config(tmp_path, data_dir=data_dir, n=n, limit=2, seed=7), lambda config: _SeedEcho())

    assert run(2).written == 4
    assert run(4).written == 4
    with SampleStore.open(tmp_path / "run.db") as store:
        texts: dict[str, set[str]] = {}
        for sample in store.iter_samples(with_topk=False):
            texts.setdefault(sample.question_id, set()).add(sample.text)
    assert {qid: len(chains) for qid, chains in texts.items()} == {"gsm8k/train/0": 4, "gsm8k/train/1": 4}
