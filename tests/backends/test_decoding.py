"""decode_rows, the continuous-batching decoding loop, checked against direct forward passes of tiny models."""

from __future__ import annotations

import functools
import os
from dataclasses import replace

import pytest
import torch
from support.tiny_models import ascii_tokenizer, single_torch_thread, tiny_llama, tiny_t5  # noqa: F401

from cotspec.backends import SamplingParams
from cotspec.backends.decoding import DecodeOptions, decode_rows

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PROMPTS = ["Q: Janet has 3 apples.\nA:", "Hello", "Q: trains leave two stations at noon; when do they meet?\n"]


@pytest.fixture(scope="module", params=["llama", "t5"])
def model_and_tokenizer(request):
    tokenizer = ascii_tokenizer()  # ByT5's would do for T5, but random bytes mostly decode to nothing
    return (tiny_llama if request.param == "llama" else tiny_t5)(tokenizer), tokenizer


def options(tokenizer) -> DecodeOptions:
    return DecodeOptions(
        eos_ids=frozenset({tokenizer.eos_token_id}),
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
    )


def decode_batch(model, prompts, params, options, *, pad_id, seeds=None, batch_size=16):
    """Every row's result in prompt order."""
    results = dict(decode_rows(model, prompts, params, options, pad_id=pad_id, batch_size=batch_size, seeds=seeds))
    assert sorted(results) == list(range(len(prompts)))
    return [results[index] for index in range(len(prompts))]


def next_token_logits(model, prompt: list[int], generated: list[int]) -> torch.Tensor:
    """[len(generated), vocab] logits that predicted each generated token, one unpadded forward pass."""
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            decoder = torch.tensor([[model.config.decoder_start_token_id] + generated[:-1]])
            return model(input_ids=torch.tensor([prompt]), decoder_input_ids=decoder).logits[0]
        full = torch.tensor([prompt + generated[:-1]])
        return model(input_ids=full).logits[0, len(prompt) - 1 :]


def assert_decoded_as_if_alone(model, tokenizer, prompts, rows, k: int = 2) -> None:
    """Every row's top-k log-probs are those of its own unpadded forward pass."""
    for prompt, row in zip(prompts, rows):
        # A row ended by a stop string holds the token that completed it; one ended by EOS does not.
        generated = row.token_ids + ([tokenizer.eos_token_id] if row.finish_reason == "stop" and row.stop_at is None else [])
        expected = torch.log_softmax(next_token_logits(model, prompt, generated).float(), dim=-1).topk(k)
        assert [ids for ids, _ in row.top_logprobs] == expected.indices.tolist()
        for (_, values), want in zip(row.top_logprobs, expected.values.tolist()):
            assert values == pytest.approx(want, rel=1e-3, abs=1e-4)


def test_top_logprobs_are_log_softmax_of_raw_logits_before_temperature(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    # A high temperature must not leak into the reported distribution (vLLM and OpenAI report raw).
    params = SamplingParams(max_new_tokens=5, temperature=3.0, top_p=0.9, top_logprobs=3)
    with torch.no_grad():
        rows = decode_batch(model, prompts, params, options(tokenizer), pad_id=tokenizer.pad_token_id, seeds=[1, 2, 3])

    for prompt, row in zip(prompts, rows):
        generated = row.token_ids + ([tokenizer.eos_token_id] if row.finish_reason == "stop" else [])
        assert len(row.top_logprobs) == row.generated == len(generated)
        expected = torch.log_softmax(next_token_logits(model, prompt, generated).float(), dim=-1).topk(3)
        for position, (ids, values) in enumerate(row.top_logprobs):
            assert ids == expected.indices[position].tolist()
            # Padding changes float32 summation order; T5's unscaled attention makes logits large.
            assert values == pytest.approx(expected.values[position].tolist(), rel=1e-3, abs=1e-4)
            assert values == sorted(values, reverse=True)


def test_sampled_rows_survive_other_rows_leaving_the_batch(model_and_tokenizer):
    """Dropping finished rows re-indexes the cache and the per-row generators; survivors must not notice."""
    model, tokenizer = model_and_tokenizer
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS] * 2
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=0)
    with torch.no_grad():
        alone = [
            decode_batch(model, [p], params, options(tokenizer), pad_id=tokenizer.pad_token_id, seeds=[s])[0]
            for s, p in enumerate(prompts)
        ]
    # End half of the rows early with a stop string made of their own 3rd and 4th characters.
    texts = [tokenizer.decode(row.token_ids, skip_special_tokens=True) for row in alone]
    stops = tuple(text[2:4] for text in texts[::2] if len(text) >= 4)
    stopped = SamplingParams(max_new_tokens=10, temperature=1.0, stop=stops)
    with torch.no_grad():
        alone = [
            decode_batch(model, [p], stopped, options(tokenizer), pad_id=tokenizer.pad_token_id, seeds=[s])[0]
            for s, p in enumerate(prompts)
        ]
        together = decode_batch(
            model, prompts, stopped, options(tokenizer), pad_id=tokenizer.pad_token_id, seeds=range(6)
        )
    assert [(r.token_ids, r.finish_reason) for r in together] == [(r.token_ids, r.finish_reason) for r in alone]
    assert sum(r.finish_reason == "stop" and r.generated < 10 for r in together) >= 2


def test_identical_prompts_are_prefilled_once_and_sampled_independently(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = tokenizer(PROMPTS[0])["input_ids"]
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    with torch.no_grad():
        rows = decode_batch(
            model, [prompt] * 3, params, options(tokenizer), pad_id=tokenizer.pad_token_id, seeds=[7, 8, 7]
        )
    assert rows[0].token_ids == rows[2].token_ids  # same seed, same sample
    assert rows[0].token_ids != rows[1].token_ids


def test_sampling_without_seeds_is_a_programming_error(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="seed"):
        decode_batch(model, [[5, 6]], SamplingParams(temperature=1.0), options(tokenizer), pad_id=0)


def test_rows_that_join_a_running_batch_decode_as_if_alone(model_and_tokenizer, monkeypatch):
    """Continuous batching: with 2 slots, rows finish at different steps and waiting prompts join —
    wider ones (the running rows gain left padding) and narrower ones; rows whose long prompts leave
    take their columns with them. Every row's distribution must be its unpadded forward pass's."""
    from cotspec.backends import decoding

    model, tokenizer = model_and_tokenizer
    texts = ["Hi", PROMPTS[2], "Q", PROMPTS[0] * 2, PROMPTS[1], "ab"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    greedy = SamplingParams(max_new_tokens=12, top_logprobs=2)
    with torch.no_grad():
        alone = [decode_batch(model, [p], greedy, options(tokenizer), pad_id=tokenizer.pad_token_id)[0] for p in prompts]
    words = [tokenizer.decode(row.token_ids, skip_special_tokens=True) for row in alone]
    params = replace(greedy, stop=tuple(word[3:5] for word in words[1::2] if len(word) >= 5))
    joins = []
    real_join = decoding.CausalStepper.join
    monkeypatch.setattr(decoding.CausalStepper, "join", lambda self, other: joins.append(1) or real_join(self, other))
    with torch.no_grad():
        rows = decode_batch(model, prompts, params, options(tokenizer), pad_id=tokenizer.pad_token_id, batch_size=2)

    assert len({row.generated for row in rows}) > 1  # rows did end at different steps
    assert bool(joins) != model.config.is_encoder_decoder  # decoder-only rows joined; T5 decodes in fixed batches
    assert_decoded_as_if_alone(model, tokenizer, prompts, rows)


def test_the_cache_grows_in_place_and_keeps_what_it_held():
    from cotspec.backends.decoding import GrowingLayer

    layer = GrowingLayer()
    first = torch.randn(2, 3, 5, 4)
    keys, values = layer.update(first, -first)
    buffer = layer._key_buffer
    assert buffer.shape[2] == 5 + GrowingLayer.SPARE
    for step in range(GrowingLayer.SPARE):
        token = torch.full((2, 3, 1, 4), float(step))
        keys, values = layer.update(token, -token)
    assert layer._key_buffer is buffer  # no reallocation while spare columns remained
    keys, values = layer.update(torch.ones(2, 3, 1, 4), -torch.ones(2, 3, 1, 4))
    assert layer._key_buffer is not buffer and layer.get_seq_length() == 5 + GrowingLayer.SPARE + 1
    assert torch.equal(keys[:, :, :5], first) and torch.equal(values[:, :, :5], -first)
    assert torch.equal(keys[:, :, 5 + 7], torch.full((2, 3, 4), 7.0))
    layer.batch_select_indices(torch.tensor([1]))
    layer.drop_leading(2)
    assert layer.keys.shape == (1, 3, 4 + GrowingLayer.SPARE, 4)
    assert torch.equal(layer.keys[0, :, :3], first[1, :, 2:])


def test_prompts_that_share_a_prefix_prefill_it_once_and_decode_as_if_alone(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    exemplar = "Q: Tom has 2 cats and 3 dogs. How many pets?\nA: 2 + 3 = 5. The answer is 5.\n\n"
    texts = [exemplar + "Q: 7 - 4?\nA:", exemplar + "Q: Sara reads 10 pages a day for a week.\nA:", exemplar + "Q"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    shapes = []
    real_forward = type(model).forward

    @functools.wraps(real_forward)
    def forward(self, *args, **kwargs):
        ids = kwargs.get("input_ids")
        shapes.append(tuple((ids if ids is not None else kwargs["decoder_input_ids"]).shape))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward)
    params = SamplingParams(max_new_tokens=6, top_logprobs=2)
    with torch.no_grad():
        rows = decode_batch(model, prompts, params, options(tokenizer), pad_id=tokenizer.pad_token_id)

    shared = len(tokenizer(exemplar + "Q")["input_ids"]) - 1  # the last prompt keeps one own token
    if not model.config.is_encoder_decoder:
        assert shapes[0] == (1, shared)  # the common prefix, once
        assert shapes[1][0] == 3 and shapes[1][1] < len(prompts[1])  # then each row's own tokens
    assert_decoded_as_if_alone(model, tokenizer, prompts, rows)


@pytest.mark.parametrize("flash_on_cpu", [True, False], ids=["cpu-flash-kernel", "portable"])
def test_rows_of_several_shared_prefixes_join_and_decode_as_if_alone(monkeypatch, flash_on_cpu):
    """Two exemplar sets and prompts without one, 3 rows at a time: each prefix is prefilled once and
    kept once (rows hold only their own tokens), rows that join reuse a prefix the batch holds, and
    every row's log-probs are its unpadded forward pass's."""
    from support.tiny_models import ascii_tokenizer, tiny_llama

    from cotspec.backends import decoding, shared_prefix

    monkeypatch.setattr(shared_prefix, "FLASH_ON_CPU", flash_on_cpu)  # portable: the path of GPUs
    tokenizer = ascii_tokenizer()
    model = tiny_llama(tokenizer)
    first = "Q: Tom has 2 cats and 3 dogs. How many pets?\nA: 2 + 3 = 5. The answer is 5.\n\n"
    second = "Input: not ( True ) and False\nReasoning: not True is False. So the answer is False.\n\n"
    texts = [first + "Q: 7 - 4?\nA:", first + "Q: Sara reads 10 pages.\nA:", first + "Q: 1 + 1?\nA:",
             first + "Q: 9 * 2?\nA:", second + "Input: True or False\n", second + "Input: not False\n", "Hello",
             second + "Input: False and True\n"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    greedy = SamplingParams(max_new_tokens=10, top_logprobs=2)
    with torch.no_grad():
        alone = [decode_batch(model, [p], greedy, options(tokenizer), pad_id=tokenizer.pad_token_id)[0] for p in prompts]
    words = [tokenizer.decode(row.token_ids, skip_special_tokens=True) for row in alone]
    # Rows end at different steps (a stop string from some rows' own output), so others join mid-way.
    params = replace(greedy, stop=tuple(word[2 + i % 4 : 4 + i % 4] for i, word in enumerate(words) if i % 2 and len(word) >= 8))
    prefills = []
    real_init = decoding.CausalStepper.__init__

    def init(self, model, prompts, pad_id, held=None):
        real_init(self, model, prompts, pad_id, held)
        prefills.append((len(prompts), self.prefixes.tokens and len(self.prefixes.tokens[0]), self.cache.get_seq_length()))

    monkeypatch.setattr(decoding.CausalStepper, "__init__", init)
    with torch.no_grad():
        rows = decode_batch(model, prompts, params, options(tokenizer), pad_id=tokenizer.pad_token_id, batch_size=3)

    first_prefix = len(os.path.commonprefix(prompts[:3]))
    assert prefills[0] == (3, first_prefix, max(len(p) for p in prompts[:3]) - first_prefix)  # own tokens only
    joined_alone = [entry for entry in prefills[1:] if entry[0] == 1]
    assert any(entry[1] == first_prefix for entry in joined_alone)  # a lone joiner reused the held prefix
    assert_decoded_as_if_alone(model, tokenizer, prompts, rows)


def test_prompts_of_two_exemplar_sets_in_one_batch_get_one_prefix_each():
    from support.tiny_models import ascii_tokenizer, tiny_llama

    from cotspec.backends.decoding import CausalStepper, prefix_runs

    tokenizer = ascii_tokenizer()
    first = "Q: Tom has 2 cats and 3 dogs. How many pets?\nA: 2 + 3 = 5. The answer is 5.\n\n"
    second = "Q: Tom reads a book of 40 pages in 4 days.\nA: 40 / 4 = 10. The answer is 10.\n\n"  # opens alike
    texts = [first + "Q: 7 - 4?\nA:", first + "Q: 1 + 1?\nA:", "Q: alone", second + "Q: 2 * 3?\nA:", second + "Q: 5?\nA:"]
    prompts = sorted(tokenizer(t)["input_ids"] for t in texts)
    runs = prefix_runs(prompts, None, CausalStepper.MIN_SHARED)
    by_prefix = sorted((stop - start, length) for start, stop, length, _ in runs)
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    shared = sorted(len(os.path.commonprefix(pair)) for pair in (encoded[:2], encoded[3:]))
    assert by_prefix == [(1, 0), (2, shared[0]), (2, shared[1])]  # not one run with the short common opening
    model = tiny_llama(tokenizer)
    params = SamplingParams(max_new_tokens=5, top_logprobs=2)
    with torch.no_grad():
        rows = decode_batch(model, prompts, params, options(tokenizer), pad_id=tokenizer.pad_token_id, batch_size=8)
        stepper = CausalStepper(model, prompts, tokenizer.pad_token_id)
    assert len(stepper.prefixes.tokens) == 2 and sorted(stepper.prefixes.row_prefix.tolist()).count(-1) == 1
    assert_decoded_as_if_alone(model, tokenizer, prompts, rows)
