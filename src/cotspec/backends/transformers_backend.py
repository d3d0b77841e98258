"""Local generation with transformers: continuous batching, shared prompt prefixes prefilled once.

Design choices, measured on the 2-core reference CPU (AMD EPYC, AVX-512 with bf16, no AMX) with
SmolLM2-135M (end-to-end figures: bench/eval_throughput.py; the decoding loop: `cotspec.backends.decoding`):

- bf16 weights (`load_model`'s ``auto``): a 16-row decoding step 125 ms against 208 ms in float32.
- Rows per step: a step's matrix products read every weight once whatever the rows, so tokens/s grow
  with rows until ~32. Continuous batching keeps the rows up: GSM8K test, a fine-tuned checkpoint,
  greedy, 256 tokens, bf16: zero-shot 55 tok/s with fixed batches of 16, 78 with continuous batching
  at 16 rows, 103 at 32; 4-shot 33 -> 43 (continuous) -> 52 (exemplars prefilled once) at 16 rows, 60
  at 32. In float32 the continuous loop returned the same 32 of 32 texts as fixed batches; in bf16 a
  different batch composition flips near-ties, so ~1 output in 4 differs somewhere in its tail.
- transformers' continuous batching (`model.generate_batch`) runs on CPU but was 2.3x slower than a
  plain batched `generate` (58 vs 133 tok/s, 16 prompts x 64 tokens, bf16), and it cannot return
  top-k logprobs or stop on strings; StaticCache (+30% per step), eager attention (+30%) and
  `torch.compile` (66 s to compile, then slower) lost too. The decoding loop is our own to keep rows
  up, return raw top-k logprobs and seed each row.
"""

from __future__ import annotations

import copy
import gc
import random
from typing import Iterable, Iterator, Sequence

import torch

from ..errors import ConfigError, CotspecError
from ..models import LoadedModel, load_model
from .base import (
    SEED_MODULUS,
    BackendSettings,
    Completion,
    GenerateFromRequests,
    ProgressCallback,
    SampleRequest,
    SampleResult,
    SamplingParams,
    sample_seed,
)
from .decoding import DecodeOptions, RowResult, decode_rows
from .stopping import tokens_covering


class TransformersBackend(GenerateFromRequests):
    """Generates with a model loaded by `cotspec.models.load_model`.

    ``generate_requests`` is native; ``generate`` comes from `GenerateFromRequests`. Rows (prompt x
    sample id) start in token order, so prompts that share exemplars are neighbours and prefill them
    once, and the rows of one prompt share its prefill.
    Greedy decoding with several sample ids decodes once and copies: the samples would be identical.
    """

    name = "transformers"

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16):
        """
        Args:
            loaded: model and tokenizer from `load_model`.
            batch_size: rows (prompt x sample) decoded together; more is faster until memory runs out.
        """
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        tokenizer = loaded.tokenizer
        eos = loaded.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {tokenizer.eos_token_id}
        eos_ids.discard(None)
        self._options = DecodeOptions(
            eos_ids=frozenset(eos_ids),
            decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        )
        self._token_strings: dict[int, str] = {}
        self._random = random.SystemRandom()

    @classmethod
    def from_model(
        cls,
        reference: str,
        *,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        batch_size: int = 16,
    ) -> TransformersBackend:
        """Load `reference` (preset, .gguf, directory or hub id; see `load_model`) and wrap it."""
        loaded = load_model(reference, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        return cls(loaded, batch_size=batch_size)

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> TransformersBackend:
        """The registry's constructor: load ``settings.model`` with its dtype, remote-code permission and
        batch size."""
        if not settings.model:
            raise ConfigError("model", "is not set: the transformers backend needs a model to load")
        return cls.from_model(
            settings.model,
            dtype=settings.dtype,
            trust_remote_code=settings.trust_remote_code,
            batch_size=settings.batch_size,
        )

    def generate_requests(
        self,
        requests: Iterable[SampleRequest],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[SampleResult]:
        """Yield one `SampleResult` per requested (key, sample id), each as soon as its batch finishes.

        A row is one (request, sample id); when sampling, it is decoded with its own generator seeded by
        ``sample_seed(seed, prompt, sample_id)`` (seed: ``params.seed``, else one random seed per call),
        so a sample does not depend on which other rows share its batch or its call.
        """
        requests = list(requests)
        if not requests:
            return
        prompt_ids = self._tokenize([request.prompt for request in requests])
        # In token order, prompts that share a prefix (exemplars) are neighbours and prefill it once.
        in_token_order = sorted(range(len(requests)), key=lambda index: prompt_ids[index])
        # Greedy samples would be identical: decode one row per request and copy it to every sample id.
        rows = [
            (index, sample_id)
            for index in in_token_order
            for sample_id in (requests[index].sample_ids[:1] if params.greedy else requests[index].sample_ids)
        ]
        run_seed = params.seed if params.seed is not None else self._random.randrange(SEED_MODULUS)
        seeds = None
        if not params.greedy:
            seeds = [sample_seed(run_seed, requests[index].prompt, sample_id) for index, sample_id in rows]
        decoded = decode_rows(
            self.loaded.model,
            [prompt_ids[index] for index, _ in rows],
            params,
            self._options,
            pad_id=self.loaded.tokenizer.pad_token_id,
            batch_size=self.batch_size,
            seeds=seeds,
            on_tokens=on_tokens,
        )
        for row, result in decoded:
            index, sample_id = rows[row]
            request = requests[index]
            completion = self._completion(result, len(prompt_ids[index]), params)
            yield SampleResult(request.key, sample_id, completion)
            if params.greedy:
                for copied_id in request.sample_ids[1:]:  # independent objects, safe to mutate
                    yield SampleResult(request.key, copied_id, copy.deepcopy(completion))

    def close(self) -> None:
        """Drop this backend's reference to the model; its memory is freed once the caller's go too."""
        self.loaded = None  # type: ignore[assignment]
        self._token_strings.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        tokenizer = self.loaded.tokenizer
        texts = [self.loaded.prepare_prompt(prompt) for prompt in prompts]
        encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
        for index, ids in enumerate(encoded):
            if not ids:
                if tokenizer.bos_token_id is None:
                    raise CotspecError(f"prompt {index} is empty and the model has no start token to begin from")
                ids.append(tokenizer.bos_token_id)
        return encoded

    def _completion(self, result: RowResult, prompt_tokens: int, params: SamplingParams) -> Completion:
        decode = self._options.decode
        text = decode(result.token_ids)
        kept = len(result.token_ids)
        if result.stop_at is not None:
            text = text[: result.stop_at]
            kept = tokens_covering(result.token_ids, len(text), decode)
        completion = Completion(
            text=text,
            finish_reason=result.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=result.generated,
        )
        if params.top_logprobs:
            # Candidates are described for the tokens of the returned text (the end-of-sequence token
            # and tokens wholly inside a stop string are not part of it).
            completion.tokens = [self._token_string(token) for token in result.token_ids[:kept]]
            completion.top_logprobs = [
                [(self._token_string(token), logprob) for token, logprob in zip(ids, logprobs)]
                for ids, logprobs in result.top_logprobs[:kept]
            ]
        return completion

    def _token_string(self, token_id: int) -> str:
        """A token on its own, special tokens spelled out (sentencepiece drops a word's leading space)."""
        text = self._token_strings.get(token_id)
        if text is None:
            text = self._token_strings[token_id] = self.loaded.tokenizer.decode([token_id])
        return text

