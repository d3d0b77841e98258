"""The backend interface's shared parts: `sample_seed` and the two adapters between `generate` and
`generate_requests`. The backends here are in-test fakes on purpose: the adapters are pure bookkeeping
(which call gets which prompts, seeds and sample ids), which a fake that echoes its inputs shows exactly."""

from __future__ import annotations

from collections import Counter

import pytest

from cotspec.backends import Completion, SampleRequest, SampleResult, SamplingParams, sample_seed
from cotspec.backends.base import GenerateFromRequests, RequestsFromGenerate


def _completion(text: str) -> Completion:
    return Completion(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1)


class EchoGenerate(RequestsFromGenerate):
    """Only `generate`: each completion names its prompt and the seed of its call; prompts come back last
    first (the protocol allows any order)."""

    name = "echo-generate"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts, params, on_tokens=None):
        self.calls.append((list(prompts), params))
        for index in reversed(range(len(prompts))):
            if on_tokens is not None:
                on_tokens(params.n)
            yield index, [_completion(f"{prompts[index]}|seed={params.seed}|row={k}") for k in range(params.n)]

    def close(self) -> None:
        pass


class EchoRequests(GenerateFromRequests):
    """Only `generate_requests`: sample ids come back in reverse, interleaved across prompts."""

    name = "echo-requests"

    def generate_requests(self, requests, params, on_tokens=None):
        requests = list(requests)
        for sample_id in reversed(range(max(max(r.sample_ids) for r in requests) + 1)):
            for request in requests:
                if sample_id in request.sample_ids:
                    yield SampleResult(request.key, sample_id, _completion(f"{request.prompt}#{sample_id}"))

    def close(self) -> None:
        pass


def test_sample_seed_is_the_documented_31_bit_blake2b_of_seed_sample_and_prompt():
    # Pinned values: changing the formula changes every seeded sample (document it if you must).
    assert sample_seed(0, "Q: 2+2?", 0) == 1071827678
    assert sample_seed(7, "Q: 2+2?", 1) == 2103017076
    seeds = {sample_seed(seed, prompt, sample) for seed in (0, 1) for prompt in ("a", "b", "") for sample in range(50)}
    assert len(seeds) == 2 * 3 * 50
    assert all(0 <= seed < 2**31 - 1 for seed in seeds)


def test_default_generate_requests_yields_each_sample_once_with_a_seed_per_sample_id():
    backend = EchoGenerate()
    requests = [SampleRequest("a", "A", (0, 1, 2)), SampleRequest("b", "B", (2,)), SampleRequest("c", "C", (3, 1))]
    tokens: list[int] = []
    params = SamplingParams(temperature=0.7, n=5, seed=7)

    results = list(backend.generate_requests(requests, params, on_tokens=tokens.append))

    pairs = Counter((r.key, r.sample_id) for r in results)
    assert pairs == Counter({("a", 0): 1, ("a", 1): 1, ("a", 2): 1, ("b", 2): 1, ("c", 3): 1, ("c", 1): 1})
    prompts = {"a": "A", "b": "B", "c": "C"}
    for result in results:
        prompt, seed, row = result.completion.text.split("|")
        assert prompt == prompts[result.key] and row == "row=0"
        assert seed == f"seed={sample_seed(7, '', result.sample_id)}"
    # One call per sample id, one completion per prompt (params.n is the requests' business, not n).
    assert [(prompts, call.n) for prompts, call in backend.calls] == [
        (["A"], 1), (["A", "C"], 1), (["A", "B"], 1), (["C"], 1),
    ]  # fmt: skip
    assert len({call.seed for _, call in backend.calls}) == 4
    assert sum(tokens) == len(results)


def test_default_generate_requests_leaves_seeding_to_the_backend_without_a_seed():
    backend = EchoGenerate()
    results = list(backend.generate_requests([SampleRequest(0, "A", (0, 1))], SamplingParams(temperature=1.0)))
    assert len(results) == 2 and [call.seed for _, call in backend.calls] == [None, None]


def test_default_generate_over_generate_requests_gathers_n_samples_in_sample_id_order():
    results = list(EchoRequests().generate(["A", "B", "C"], SamplingParams(n=3, temperature=1.0)))
    assert sorted(index for index, _ in results) == [0, 1, 2]
    for index, completions in results:
        assert [c.text for c in completions] == [f"{'ABC'[index]}#{k}" for k in range(3)]


def test_sample_requests_need_distinct_sample_ids():
    with pytest.raises(ValueError, match="non-empty and distinct"):
        SampleRequest("q", "Q", (1, 1))
    with pytest.raises(ValueError, match="non-empty and distinct"):
        SampleRequest("q", "Q", ())
