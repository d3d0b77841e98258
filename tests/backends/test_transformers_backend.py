"""TransformersBackend on tiny random models built in the test (a 2-layer Llama and a 2-layer T5) with a
one-token-per-character ASCII tokenizer, so stop-string and token-string cases are exact. The
reference for greedy decoding is transformers' own `model.generate` on one prompt."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch
from support.tiny_models import ascii_tokenizer, single_torch_thread, tiny_llama, tiny_t5  # noqa: F401

from cotspec.backends import SampleRequest, SamplingParams, get_backend_class
from cotspec.backends.transformers_backend import TransformersBackend
from cotspec.errors import CotspecError
from cotspec.models import LoadedModel

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PROMPTS = [
    "Q: Janet has 3 apples.\nA:",
    "Q: 2+2?\n",
    "Hello",
    "Q: A much longer question about trains leaving stations at different times.\nA: Let's think",
    "x",
]


@pytest.fixture(scope="module")
def llama() -> LoadedModel:
    tokenizer = ascii_tokenizer()
    return LoadedModel(tiny_llama(tokenizer), tokenizer, is_seq2seq=False, reference="tiny-llama", source="test")


@pytest.fixture(scope="module")
def t5() -> LoadedModel:
    tokenizer = ascii_tokenizer()  # ByT5's would do, but random bytes mostly decode to nothing
    tokenizer.padding_side = "right"
    return LoadedModel(tiny_t5(tokenizer), tokenizer, is_seq2seq=True, reference="tiny-t5", source="test")


def run(backend: TransformersBackend, prompts, params: SamplingParams) -> dict[int, list]:
    results: dict[int, list] = {}
    for index, completions in backend.generate(prompts, params):
        assert index not in results, f"index {index} yielded twice"
        results[index] = completions
    return results


def reference_greedy(loaded: LoadedModel, prompt: str, max_new_tokens: int) -> list[int]:
    """transformers' own greedy decoding of one prompt, no padding involved."""
    encoded = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = loaded.model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id
        )
    generated = output[0] if loaded.is_seq2seq else output[0, encoded["input_ids"].shape[1] :]
    return [t for t in generated.tolist() if t not in (loaded.tokenizer.pad_token_id, loaded.tokenizer.eos_token_id)]


@pytest.mark.parametrize("model_name", ["llama", "t5"])
def test_batched_greedy_equals_transformers_generate_per_prompt(model_name, request):
    loaded = request.getfixturevalue(model_name)
    backend = TransformersBackend(loaded, batch_size=3)
    results = run(backend, PROMPTS, SamplingParams(max_new_tokens=12))

    for index, prompt in enumerate(PROMPTS):
        expected = loaded.tokenizer.decode(reference_greedy(loaded, prompt, 12), skip_special_tokens=True)
        assert results[index][0].text == expected, f"prompt {index}"


def test_rows_leave_the_batch_without_changing_results(llama):
    """Rows that stop early are dropped from the KV cache; the survivors must not notice."""
    free = run(TransformersBackend(llama, batch_size=8), PROMPTS, SamplingParams(max_new_tokens=16))
    # A stop string taken from each output at a different depth ends the rows at different steps.
    stops = tuple(free[i][0].text[2 + 3 * i : 4 + 3 * i] for i in range(3))
    params = SamplingParams(max_new_tokens=16, stop=stops)
    together = run(TransformersBackend(llama, batch_size=8), PROMPTS, params)
    alone = run(TransformersBackend(llama, batch_size=1), PROMPTS, params)
    assert {i: (c[0].text, c[0].finish_reason) for i, c in together.items()} == {
        i: (c[0].text, c[0].finish_reason) for i, c in alone.items()
    }
    assert Counter(c[0].completion_tokens < 16 for c in together.values())[True] >= 3


def test_stop_sequences_cut_each_row_at_its_own_match(llama):
    backend = TransformersBackend(llama, batch_size=4)
    free = run(backend, PROMPTS[:2], SamplingParams(max_new_tokens=20))
    first, second = free[0][0].text, free[1][0].text
    stop = first[5:7]
    assert stop not in second, "pick prompts whose outputs differ"
    stopped = run(backend, PROMPTS[:2], SamplingParams(max_new_tokens=20, stop=(stop, "never-generated")))

    assert stopped[0][0].text == first[: first.index(stop)]
    assert stopped[0][0].finish_reason == "stop"
    assert stopped[0][0].completion_tokens == first.index(stop) + len(stop)  # one token per character
    assert stopped[1][0].text == second
    assert stopped[1][0].finish_reason == free[1][0].finish_reason


def test_end_of_sequence_token_ends_a_row_with_reason_stop(llama):
    free = run(TransformersBackend(llama), PROMPTS[:1], SamplingParams(max_new_tokens=10))[0][0]
    # Declare the 4th generated character the end-of-sequence token: generation must end there.
    eos_id = llama.tokenizer.convert_tokens_to_ids(llama.tokenizer.tokenize(free.text[3])[0])
    llama.model.generation_config.eos_token_id = [llama.tokenizer.eos_token_id, eos_id]
    try:
        ended = run(TransformersBackend(llama), PROMPTS[:1], SamplingParams(max_new_tokens=10))[0][0]
    finally:
        llama.model.generation_config.eos_token_id = llama.tokenizer.eos_token_id
    cut = free.text.index(free.text[3])
    assert ended.text == free.text[:cut]
    assert ended.finish_reason == "stop"
    assert ended.completion_tokens == cut + 1  # the end-of-sequence token was generated, not returned


def test_max_new_tokens_is_respected(llama):
    results = run(TransformersBackend(llama, batch_size=2), PROMPTS, SamplingParams(max_new_tokens=7))
    for (completion,) in results.values():
        assert completion.completion_tokens <= 7
        if completion.finish_reason == "length":
            assert completion.completion_tokens == 7


def test_every_index_is_yielded_exactly_once_with_n_samples(llama):
    prompts = PROMPTS + ["y", "zz"]
    backend = TransformersBackend(llama, batch_size=3)  # n=2 rows per prompt straddle batch boundaries
    seen = Counter()
    for index, completions in backend.generate(prompts, SamplingParams(max_new_tokens=4, temperature=1.0, n=2, seed=1)):
        seen[index] += 1
        assert len(completions) == 2
        assert all(c.prompt_tokens == len(llama.tokenizer(prompts[index])["input_ids"]) for c in completions)
    assert seen == Counter(range(len(prompts)))


def test_sampling_is_reproducible_per_seed_and_independent_of_batching(llama):
    params = SamplingParams(max_new_tokens=12, temperature=1.5, n=3, seed=123)

    def texts(batch_size: int, seed: int) -> dict[int, list[str]]:
        backend = TransformersBackend(llama, batch_size=batch_size)
        return {i: [c.text for c in cs] for i, cs in run(backend, PROMPTS, replace(params, seed=seed)).items()}

    first = texts(4, 123)
    assert first == texts(4, 123)
    assert first == texts(7, 123), "a row's sample must not depend on its batch"
    assert first != texts(4, 124)
    assert any(len(set(samples)) > 1 for samples in first.values()), "n samples should differ"


def test_generate_requests_draws_each_sample_from_its_seed_prompt_and_sample_id_alone(llama):
    """The teacher sampler's entry point: sample k of a prompt is the same draw whichever other requests,
    sample ids and batch boundaries share its call, so a resumed run reproduces or extends a full one."""
    params = SamplingParams(max_new_tokens=10, temperature=1.5, seed=7)

    def texts(requests, batch_size: int = 4) -> dict:
        results = list(TransformersBackend(llama, batch_size=batch_size).generate_requests(requests, params))
        assert len(results) == len({(r.key, r.sample_id) for r in results}), "a sample yielded twice"
        return {(r.key, r.sample_id): r.completion.text for r in results}

    full = texts([SampleRequest(i, prompt, (0, 1, 2, 3)) for i, prompt in enumerate(PROMPTS)])
    assert set(full) == {(i, k) for i in range(len(PROMPTS)) for k in range(4)}
    assert texts([SampleRequest("alone", PROMPTS[3], (2,))], batch_size=1) == {("alone", 2): full[3, 2]}
    resumed = texts([SampleRequest(0, PROMPTS[0], (3, 1)), SampleRequest(4, PROMPTS[4], (2,))], batch_size=2)
    assert resumed == {(0, 3): full[0, 3], (0, 1): full[0, 1], (4, 2): full[4, 2]}
    assert all(len({full[i, k] for k in range(4)}) > 1 for i in (0, 3)), "sample ids must be distinct draws"
    # generate() is the same draws: its k-th completion of a prompt is sample id k.
    generated = run(TransformersBackend(llama, batch_size=3), PROMPTS, replace(params, n=4))
    assert {(i, k): c.text for i, cs in generated.items() for k, c in enumerate(cs)} == full


def test_greedy_requests_decode_once_and_copy_to_every_sample_id(llama):
    backend = TransformersBackend(llama)
    results = list(backend.generate_requests([SampleRequest("q", PROMPTS[0], (4, 9))], SamplingParams(max_new_tokens=5)))
    assert sorted(r.sample_id for r in results) == [4, 9]
    assert results[0].completion.text == results[1].completion.text
    assert results[0].completion is not results[1].completion


def test_greedy_n_copies_one_decode(llama):
    results = run(TransformersBackend(llama), PROMPTS[:2], SamplingParams(max_new_tokens=5, n=3))
    for completions in results.values():
        assert len(completions) == 3
        assert len({c.text for c in completions}) == 1
        assert len({id(c) for c in completions}) == 3  # independent objects, safe to mutate


def test_top_logprobs_come_as_token_strings_aligned_with_the_text(llama):
    k = 4
    params = SamplingParams(max_new_tokens=6, top_logprobs=k, temperature=0.7, seed=5)
    results = run(TransformersBackend(llama, batch_size=4), PROMPTS[:3], params)

    for index in range(3):
        (completion,) = results[index]
        generated = llama.tokenizer(completion.text, add_special_tokens=False)["input_ids"]
        assert "".join(completion.tokens) == completion.text
        assert len(completion.top_logprobs) == len(generated) == 6
        prompt = llama.tokenizer(PROMPTS[index], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            full = torch.cat([prompt, torch.tensor([generated])], dim=1)
            logits = llama.model(input_ids=full).logits[0, prompt.shape[1] - 1 : -1]
        expected = torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)
        for position, candidates in enumerate(completion.top_logprobs):
            expected_tokens = [llama.tokenizer.decode([t]) for t in expected.indices[position]]
            assert [token for token, _ in candidates] == expected_tokens
            assert [value for _, value in candidates] == pytest.approx(expected.values[position].tolist(), abs=1e-4)


def test_top_logprobs_stop_at_the_returned_text(llama):
    free = run(TransformersBackend(llama), PROMPTS[:1], SamplingParams(max_new_tokens=12))[0][0].text
    stop = free[4:6]
    params = SamplingParams(max_new_tokens=12, stop=(stop,), top_logprobs=2)
    (completion,) = run(TransformersBackend(llama), PROMPTS[:1], params)[0]
    assert completion.text == free[: free.index(stop)]
    assert "".join(completion.tokens) == completion.text
    assert len(completion.top_logprobs) == len(completion.tokens)


def test_empty_prompt_starts_from_the_start_token(llama):
    (completion,) = run(TransformersBackend(llama), [""], SamplingParams(max_new_tokens=3))[0]
    assert completion.prompt_tokens == 1 and completion.completion_tokens == 3


def test_registry_names_the_backend_and_rejects_unknown_names():
    assert get_backend_class("transformers") is TransformersBackend
    with pytest.raises(CotspecError, match="unknown backend 'vllm'.*transformers"):
        get_backend_class("vllm")


def test_bad_batch_size_names_the_field(llama):
    with pytest.raises(CotspecError, match="^batch_size: must be >= 1, got 0$"):
        TransformersBackend(llama, batch_size=0)
