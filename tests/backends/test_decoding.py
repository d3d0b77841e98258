"""decode_batch, the per-batch decoding loop, checked against direct forward passes of tiny models."""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import ascii_tokenizer, single_torch_thread, tiny_llama, tiny_t5  # noqa: F401

from cotspec.backends import SamplingParams
from cotspec.backends.decoding import DecodeOptions, decode_batch

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


def next_token_logits(model, prompt: list[int], generated: list[int]) -> torch.Tensor:
    """[len(generated), vocab] logits that predicted each generated token, one unpadded forward pass."""
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            decoder = torch.tensor([[model.config.decoder_start_token_id] + generated[:-1]])
            return model(input_ids=torch.tensor([prompt]), decoder_input_ids=decoder).logits[0]
        full = torch.tensor([prompt + generated[:-1]])
        return model(input_ids=full).logits[0, len(prompt) - 1 :]


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
