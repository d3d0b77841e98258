"""Token-by-token decoding with continuous batching: finished rows leave, waiting prompts join.

`model.generate` keeps every row of a batch in the forward pass until the last one finishes, so a
batch costs as much as its longest completion times its size, and the next batch waits for it. Here a
finished row leaves at once (its KV-cache entries are dropped) and, once a quarter of the slots are
free, the next waiting prompts are prefilled and join the running batch, so a decoding step keeps
(nearly) `batch_size` rows until the work runs out. On a CPU a step's cost barely grows with its rows
(the weights are read once per step whatever the rows), so full steps are what makes decoding fast;
figures in bench/eval_throughput.py.

Joining needs a common layout: every row of the batch is right-aligned to one cache width, with
padding on the left that the attention mask hides, and explicit position ids that count each row's
real tokens only, as if it were alone. A row that joins a wider batch is padded on the left; columns
that no remaining row uses are cut. The KV cache grows in place (`GrowingLayer`) rather than by one
`torch.cat` of the whole cache per step.

Encoder-decoder models (T5) decode in fixed batches: their decoder's relative position bias is
computed from the cache length, shared by all rows, so rows that started at different steps cannot
share a batch. Models with cache layers other than plain full attention (sliding windows, linear
attention) do the same.

A "stepper" hides the difference between decoder-only and encoder-decoder models: it produces the
logits for the next token of every active row, advances by one token, and can keep a subset of rows.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from transformers import (
    DynamicCache,
    EncoderDecoderCache,
    PreTrainedModel,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicLayer

from .base import SamplingParams
from .shared_prefix import SharedPrefixes, attending
from .shared_prefix import supported as shared_prefix_supported
from .stopping import find_stop


@dataclass
class RowResult:
    """Raw outcome of one row: generated ids (end-of-sequence token excluded) and how it ended."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    generated: int = 0
    """Tokens the model produced, the end-of-sequence token included."""
    stop_at: int | None = None
    """Character offset of the stop string in the decoded text, when a stop string ended the row."""
    top_logprobs: list[tuple[list[int], list[float]]] | None = None
    """Per generated token: (candidate ids, their log-probs), most likely first."""


def _cache_argument(model: PreTrainedModel, cache: object) -> dict[str, object]:
    """The KV cache as the model's forward wants it: `cache` from transformers 5.x (which deprecates
    `past_key_values`, to be removed in 5.40), `past_key_values` before."""
    forward = type(model).forward
    name = _CACHE_NAMES.get(forward)
    if name is None:
        name = "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
        _CACHE_NAMES[forward] = name
    return {name: cache}


_CACHE_NAMES: dict[object, str] = {}


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer that writes new tokens into spare capacity instead of concatenating.

    `DynamicLayer` copies the whole layer cache at every step (``torch.cat``); this one keeps
    ``[batch, heads, capacity, head_dim]`` buffers and returns views of the filled part, reallocating
    only when the capacity runs out (`SPARE` more columns at a time). ``keys`` / ``values`` stay the
    filled views, so code that reads them as a `DynamicLayer`'s sees the same tensors.
    """

    SPARE = 64
    """Columns allocated beyond what is needed when the buffer grows: one reallocation per 64 steps."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer = self._value_buffer = None
        self._length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self._key_buffer is None or self._length + new > self._key_buffer.shape[-2]:
            self._reallocate(self._length + new + self.SPARE, key_states, value_states)
        end = self._length + new
        self._key_buffer[:, :, self._length : end] = key_states
        self._value_buffer[:, :, self._length : end] = value_states
        self._length = end
        self._refresh_views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self._key_buffer = self._key_buffer[indices]
            self._value_buffer = self._value_buffer[indices]
            self._refresh_views()

    def drop_leading(self, columns: int) -> None:
        """Forget the first `columns` positions of every row (a view: nothing is copied)."""
        if columns and self.get_seq_length() > 0:
            self._key_buffer = self._key_buffer[:, :, columns:]
            self._value_buffer = self._value_buffer[:, :, columns:]
            self._length -= columns
            self._refresh_views()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("GrowingLayer is cotspec's decoding cache; it does not crop")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("GrowingLayer is cotspec's decoding cache; use batch_select_indices")

    def _reallocate(self, capacity: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Move the filled part into zeroed buffers of `capacity` columns, shaped like the new states."""
        for name, states in (("_key_buffer", key_states), ("_value_buffer", value_states)):
            old = getattr(self, name)
            rows, heads, _, width = states.shape
            buffer = states.new_zeros(rows, heads, capacity, width)
            if old is not None and self._length:
                buffer[:, :, : self._length] = old[:, :, : self._length]
            setattr(self, name, buffer)

    def _refresh_views(self) -> None:
        self.keys = self._key_buffer[:, :, : self._length]
        self.values = self._value_buffer[:, :, : self._length]


def _growing_cache(model: PreTrainedModel) -> tuple[DynamicCache, bool]:
    """A DynamicCache whose plain full-attention layers grow in place, and whether rows can join it
    (every layer is such a layer)."""
    cache = DynamicCache(config=model.config)
    if not cache.layers:  # no layer types known: one growing layer per decoder layer, made on first use
        cache.layer_class_to_replicate = GrowingLayer
        return cache, True
    joinable = True
    for index, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            cache.layers[index] = GrowingLayer()
        else:
            joinable = False
    return cache, joinable


def _stack_right_aligned(parts: Sequence[torch.Tensor], width: int, dim: int, spare: int = 0) -> torch.Tensor:
    """Concatenate `parts` along dim 0, each right-aligned to `width` columns of dimension `dim`, zeros
    to the left, and `spare` unused columns after `width` (capacity for the next steps)."""
    first = parts[0]
    shape = list(first.shape)
    shape[0] = sum(part.shape[0] for part in parts)
    shape[dim] = width + spare
    out = first.new_zeros(shape)
    row = 0
    for part in parts:
        columns = part.shape[dim]
        out.narrow(0, row, part.shape[0]).narrow(dim, width - columns, columns).copy_(part)
        row += part.shape[0]
    return out


def prefix_runs(
    prompts: Sequence[Sequence[int]], held: SharedPrefixes | None, min_shared: int
) -> list[tuple[int, int, int, int | None]]:
    """Cut prompts (in token order, so alike prompts are neighbours) into runs that share a prefix:
    (start, stop, prefix length, index of the `held` prefix reused or None). A run is prompts that
    extend a held prefix, or neighbours whose common prefix stays >= `min_shared` tokens and above half
    of what the run shared so far (two BBH tasks that open alike are two runs, not one short prefix);
    a lone prompt is a run with length 0. Every row keeps at least one own token."""
    runs = []
    start = 0
    while start < len(prompts):
        reused = held.longest_common([prompts[start]]) if held is not None else None
        stop = start + 1
        if reused is not None:
            tokens = held.tokens[reused]
            while stop < len(prompts) and held.longest_common([prompts[stop]]) == reused:
                stop += 1
            runs.append((start, stop, len(tokens), reused))
        else:
            length = len(prompts[start]) - 1
            while stop < len(prompts):
                common = min(len(os.path.commonprefix([list(prompts[stop - 1]), list(prompts[stop])])), len(prompts[stop]) - 1)
                if common < min_shared or common * 2 < length:
                    break
                length = min(length, common)
                stop += 1
            runs.append((start, stop, length if stop - start > 1 else 0, None))
        start = stop
    return runs


class CausalStepper:
    """Decoder-only: left-padded prompts, explicit position ids, one growing KV cache.

    Prompts that start alike (few-shot exemplars, a shared instruction) are prefilled in two parts:
    their common prefix once, then each row's own rest. With SDPA attention the prefix's keys and values
    stay single and every row attends to them besides its own cache (`shared_prefix`); otherwise they
    are copied to every row, which then reads ``[prefix][padding][own tokens]``. Either way the mask
    hides the padding and positions count real tokens.
    """

    MIN_SHARED = 16
    """Shortest common prefix worth a separate prefill (below it, one batched prefill is as cheap)."""

    def __init__(
        self,
        model: PreTrainedModel,
        prompts: Sequence[Sequence[int]],
        pad_id: int,
        held: SharedPrefixes | None = None,
    ):
        """`held`: prefixes already computed (those of the batch these rows will join); a run of prompts
        that extend one of them reuses it as it is, not prefilled again."""
        self.model = model
        device = model.device
        self.cache, self.can_join = _growing_cache(model)
        self.prefixes = SharedPrefixes(row_prefix=torch.full((len(prompts),), -1, dtype=torch.long, device=device))
        offsets = [0] * len(prompts)  # prompt tokens of each row held as a shared prefix
        if self.can_join and shared_prefix_supported(model):
            for start, stop, length, held_index in prefix_runs(prompts, held, self.MIN_SHARED):
                if held_index is not None:
                    index = self.prefixes.add(held.tokens[held_index], held.keys[held_index], held.values[held_index])
                elif length:
                    keys, values = self._prefill_prefix(prompts[start][:length], DynamicCache(config=model.config))
                    index = self.prefixes.add(prompts[start][:length], keys, values)
                else:
                    continue
                self.prefixes.row_prefix[start:stop] = index
                offsets[start:stop] = [length] * (stop - start)
            self.mask = torch.ones((len(prompts), 0), dtype=torch.long, device=device)
        else:
            shared = 0
            if self.can_join and len(prompts) > 1:
                # Every row keeps at least one own token: its last one gives the first logits.
                shared = min(len(os.path.commonprefix([list(p) for p in prompts])), min(map(len, prompts)) - 1)
                shared = shared if shared >= self.MIN_SHARED else 0
            if shared:  # copied into every row, which then reads [prefix][padding][own tokens]
                self._prefill_prefix(prompts[0][:shared], self.cache)
                self.cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long, device=device))
            self.mask = torch.ones((len(prompts), shared), dtype=torch.long, device=device)
            offsets = [shared] * len(prompts)

        rests = [p[offset:] for p, offset in zip(prompts, offsets)]
        width = max(len(rest) for rest in rests)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        rest_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(rests):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            rest_mask[row, width - len(ids) :] = 1
        rest_mask = rest_mask.to(device)
        self.mask = torch.cat([self.mask, rest_mask], dim=1)
        shift = torch.tensor(offsets, dtype=torch.long, device=device)[:, None]
        # Padding shifts the prompt; positions count real tokens only, as if each row were alone.
        positions = (rest_mask.cumsum(-1) - 1 + shift).clamp(min=0)
        self.last_position = positions[:, -1:]
        with attending(model, self.prefixes):
            self.first_logits = model(
                input_ids=input_ids.to(device),
                attention_mask=self.mask,
                position_ids=positions,
                **_cache_argument(self.model, self.cache),
                use_cache=True,
                logits_to_keep=1,  # the LM head on the last position only: vocab x prompt length saved
            ).logits[:, -1]

    def _prefill_prefix(self, tokens: Sequence[int], cache: DynamicCache) -> tuple[list, list]:
        """Run `tokens` as one row into `cache`; its per-layer keys and values, [KV heads, len, head dim]."""
        device = self.model.device
        self.model(
            input_ids=torch.tensor([list(tokens)], device=device),
            attention_mask=torch.ones((1, len(tokens)), dtype=torch.long, device=device),
            position_ids=torch.arange(len(tokens), device=device)[None],
            **_cache_argument(self.model, cache),
            use_cache=True,
            logits_to_keep=1,
        )
        return [layer.keys[0] for layer in cache.layers], [layer.values[0] for layer in cache.layers]

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(tokens), 1))], dim=1)
        self.last_position = self.last_position + 1
        with attending(self.model, self.prefixes):
            return self.model(
                input_ids=tokens[:, None],
                attention_mask=self.mask,
                position_ids=self.last_position,
                **_cache_argument(self.model, self.cache),
                use_cache=True,
            ).logits[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices may repeat: that duplicates a row); cut columns no row uses."""
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.last_position = self.last_position[rows]
        self.prefixes.select(rows)
        if self.can_join:
            unused = self._unused_columns()
            if unused:
                for layer in self.cache.layers:
                    layer.drop_leading(unused)
                self.mask = self.mask[:, unused:]

    def join(self, other: CausalStepper) -> None:
        """Append `other`'s rows after this stepper's, both right-aligned to the wider of the two."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for name in ("_key_buffer", "_value_buffer"):
                parts = [getattr(layer, name)[:, :, : layer.get_seq_length()] for layer in (mine, theirs)]
                setattr(mine, name, _stack_right_aligned(parts, width, dim=2, spare=GrowingLayer.SPARE))
            mine._length = width
            mine._refresh_views()
        self.mask = _stack_right_aligned([self.mask, other.mask], width, dim=1)
        self.last_position = torch.cat([self.last_position, other.last_position])
        self.prefixes.join(other.prefixes)

    def _unused_columns(self) -> int:
        """Leading columns that are padding in every row."""
        used = self.mask.any(dim=0)
        return int(used.to(torch.int8).argmax()) if bool(used.any()) else 0


class Seq2SeqStepper:
    """Encoder-decoder: encode once (right padding is harmless there), then decode from the start token."""

    can_join = False

    def __init__(self, model: PreTrainedModel, prompts: Sequence[Sequence[int]], pad_id: int):
        self.model = model
        device = model.device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            self.mask[row, : len(ids)] = 1
        input_ids, self.mask = input_ids.to(device), self.mask.to(device)
        self.encoded = model.get_encoder()(input_ids=input_ids, attention_mask=self.mask)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = model.generation_config.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        self.first_logits = self.advance(torch.full((len(prompts),), start, dtype=torch.long, device=device))

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(
            encoder_outputs=self.encoded,
            attention_mask=self.mask,
            decoder_input_ids=tokens[:, None],
            **_cache_argument(self.model, self.cache),
            use_cache=True,
        ).logits[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.encoded.last_hidden_state = self.encoded.last_hidden_state[rows]


@dataclass(frozen=True)
class DecodeOptions:
    """What a batch needs to know about the tokenizer."""

    eos_ids: frozenset[int]
    """Token ids that end a completion (returned as finish_reason "stop", not as text)."""
    decode: Callable[[Sequence[int]], str]
    """Token ids -> text (special tokens skipped), for stop-string matching."""


def decode_rows(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    options: DecodeOptions,
    *,
    pad_id: int,
    batch_size: int,
    seeds: Sequence[int] | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, RowResult]]:
    """Yield (index into `prompts`, its completion) for every prompt (token ids, unpadded), each as
    soon as it finishes; prompts start in the order given, at most `batch_size` rows at a time.

    `seeds` (one per row, required when sampling) seed a private generator per row, so a row's
    sample does not depend on which other rows share its batch. Inference mode is entered around the
    model's work only, never while the caller holds a yielded row.
    """
    if not params.greedy and seeds is None:
        raise ValueError("decode_rows: sampling needs one seed per row")
    if not prompts:
        return
    device = model.device
    joinable = not model.config.is_encoder_decoder
    stepper_class = CausalStepper if joinable else Seq2SeqStepper
    # Fixed batches (encoder-decoder) are made equal-sized: 50 rows at batch_size 16 run as
    # 13+13+13+11, not 16+16+16+2 (a batch of 2 costs nearly as many steps as one of 16).
    fixed_size = math.ceil(len(prompts) / math.ceil(len(prompts) / batch_size))
    refill_at = max(1, batch_size // 4)  # free slots that make a prefill of waiting prompts worth it
    warpers = _warpers(params)

    waiting = deque(range(len(prompts)))
    results: dict[int, RowResult] = {}
    generators: dict[int, torch.Generator] = {}
    active: list[int] = []  # prompt index of each row in the batch, in cache order
    stepper = None
    logits = None
    while waiting or active:
        finished: list[int] = []
        with torch.inference_mode():
            free = batch_size - len(active)
            can_join = active and stepper.can_join
            if waiting and (not active or (can_join and free >= refill_at)):
                group = [waiting.popleft() for _ in range(min(free if joinable else fixed_size, len(waiting)))]
                held = stepper.prefixes if active and joinable else None
                new, new_logits = _prefill(stepper_class, model, [prompts[row] for row in group], pad_id, held)
                for row in group:
                    results[row] = RowResult(top_logprobs=[] if params.top_logprobs else None)
                    if seeds is not None:
                        generators[row] = torch.Generator(device=device).manual_seed(seeds[row])
                if active:
                    stepper.join(new)
                    logits = torch.cat([logits, new_logits])
                else:
                    stepper, logits = new, new_logits
                active += group
            row_generators = None if seeds is None else [generators[row] for row in active]
            next_tokens = _choose(logits.float(), params, warpers, row_generators, results, active)

            keep = []  # positions in `active` whose row goes on
            for pos, (row, token) in enumerate(zip(active, next_tokens.tolist())):
                result = results[row]
                result.generated += 1
                if token in options.eos_ids:
                    result.finish_reason = "stop"
                elif _append_and_check_stop(result, token, params, options):
                    result.finish_reason = "stop"
                elif result.generated >= params.max_new_tokens:
                    pass  # finish_reason stays "length"
                else:
                    keep.append(pos)
                    continue
                finished.append(row)
            if on_tokens is not None:
                on_tokens(len(active))
            if len(keep) < len(active):
                if keep:
                    keep_index = torch.tensor(keep, device=device)
                    stepper.select(keep_index)
                    next_tokens = next_tokens[keep_index]
                active = [active[pos] for pos in keep]
            if active:
                logits = stepper.advance(next_tokens)
            else:
                stepper = logits = None
        for row in finished:
            generators.pop(row, None)
            yield row, results.pop(row)


def _prefill(stepper_class, model: PreTrainedModel, prompts: list[Sequence[int]], pad_id: int, held=None):
    """A stepper over `prompts` and the logits of their first tokens; each distinct prompt is prefilled
    once (n samples of a prompt then share its cache rows by copy). `held`: the running batch's shared
    prefixes, reused by new rows that extend one of them (decoder-only)."""
    distinct: dict[tuple[int, ...], int] = {}
    source_row = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
    extra = {"held": held} if held is not None else {}
    stepper = stepper_class(model, [list(p) for p in distinct], pad_id, **extra)
    logits = stepper.first_logits
    if len(distinct) < len(prompts):
        expand = torch.tensor(source_row, device=model.device)
        stepper.select(expand)
        logits = logits[expand]
    return stepper, logits


def _append_and_check_stop(result: RowResult, token: int, params: SamplingParams, options: DecodeOptions) -> bool:
    """Add `token` to the row's text; True when a stop string now ends it."""
    result.token_ids.append(token)
    if not params.stop:
        return False
    result.stop_at = find_stop(options.decode(result.token_ids), params.stop)
    return result.stop_at is not None


def _warpers(params: SamplingParams) -> list:
    if params.greedy:
        return []
    warpers: list = [TemperatureLogitsWarper(params.temperature)]
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return warpers


def _choose(
    scores: torch.Tensor,
    params: SamplingParams,
    warpers: list,
    generators: list[torch.Generator] | None,
    results: dict[int, RowResult],
    active: list[int],
) -> torch.Tensor:
    """Next token per row: argmax when greedy, else a draw from the warped distribution. Records the
    raw top-k log-probs first when asked."""
    if params.top_logprobs:
        # Raw model distribution (before temperature / top-p), as vLLM and OpenAI report it.
        top = torch.log_softmax(scores, dim=-1).topk(params.top_logprobs, dim=-1)
        for row, ids, values in zip(active, top.indices.tolist(), top.values.tolist()):
            results[row].top_logprobs.append((ids, values))
    if generators is None:
        return scores.argmax(dim=-1)
    for warper in warpers:
        scores = warper(None, scores)
    probs = torch.softmax(scores, dim=-1)
    draws = [torch.multinomial(probs[row], 1, generator=gen) for row, gen in enumerate(generators)]
    return torch.cat(draws)
