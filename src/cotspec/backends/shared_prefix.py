"""Attention over a prompt prefix that many rows share, kept once instead of copied into every row.

Few-shot prompts (GSM8K's 8 exemplars, a BBH task's 3-shot prompt) are ~90% the same tokens. The
decoder prefills that prefix once; before this module every row then held its own copy of the prefix's
keys and values, and every decoding step read all of them: 32 rows x ~800 prefix tokens made attention
the largest cost of an 8-shot step. Here the prefix's keys and values stay single ([KV, P, D] per
layer) and each row's cache holds only its own tokens. Attention splits in two and merges exactly:

* over the prefix: every query of every row that shares it, as the rows of one attention call against
  the prefix keys (no mask: a prefix is visible to all of its rows' tokens);
* over the row's own tokens: as usual, with the causal / padding mask transformers builds for the
  row's own columns;
* the two partial softmaxes are combined with their log-sum-exps (the "cascade" or "shared-prefix"
  attention of FlashInfer and vLLM): out = w_p o_p + w_o o_o, w = exp(lse - logaddexp(lse_p, lse_o)).

Several prefixes may be live at once (continuous batching across BBH tasks): `row_prefix` maps each row
to its prefix, -1 for a row without one. `shared_prefix_attention` is registered with transformers'
attention and mask registries under `NAME` (the mask built as for SDPA) and reads the prefixes of the
block entered with `attending(model, prefixes)`. Models whose attention is not SDPA (and encoder-decoder
ones) keep the copy per row (`supported`).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "cotspec_shared_prefix"
FLASH_ON_CPU = True
"""Use PyTorch's CPU flash-attention kernel for the two partial attentions (tests switch it off to
check the portable path that other devices take)."""


@dataclass
class SharedPrefixes:
    """The prefixes rows attend to besides their own tokens."""

    tokens: list[tuple[int, ...]] = field(default_factory=list)
    """Token ids of each prefix (to recognise a prefix already held when rows join)."""
    keys: list[list[torch.Tensor]] = field(default_factory=list)
    """keys[prefix][layer]: [KV heads, prefix length, head dim], after the rotary embedding."""
    values: list[list[torch.Tensor]] = field(default_factory=list)
    row_prefix: torch.Tensor | None = None
    """[rows] long: the prefix of each row in cache order, -1 for none."""

    def add(self, tokens: Sequence[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> int:
        """Index of the prefix `tokens`, stored now unless it is held already."""
        key = tuple(tokens)
        if key in self.tokens:
            return self.tokens.index(key)
        self.tokens.append(key)
        self.keys.append(keys)
        self.values.append(values)
        return len(self.tokens) - 1

    def select(self, rows: torch.Tensor) -> None:
        """Keep `rows` (in this order); prefixes no row reads any more are dropped."""
        self.row_prefix = self.row_prefix[rows]
        used = sorted(set(self.row_prefix[self.row_prefix >= 0].tolist()))
        if len(used) < len(self.tokens):
            lookup = torch.full((len(self.tokens) + 1,), -1, dtype=torch.long, device=self.row_prefix.device)
            lookup[used] = torch.arange(len(used), device=self.row_prefix.device)
            self.row_prefix = lookup[self.row_prefix]  # -1 indexes the trailing -1
            self.tokens, self.keys, self.values = ([kept[i] for i in used] for kept in (self.tokens, self.keys, self.values))

    def join(self, other: SharedPrefixes) -> None:
        """Append `other`'s rows (after this object's), mapping their prefixes onto this one's."""
        remap = [self.add(tokens, keys, values) for tokens, keys, values in zip(other.tokens, other.keys, other.values)]
        lookup = torch.tensor(remap + [-1], dtype=torch.long, device=other.row_prefix.device)
        self.row_prefix = torch.cat([self.row_prefix, lookup[other.row_prefix]])  # -1 indexes the trailing -1

    def longest_common(self, prompts: Sequence[Sequence[int]]) -> int | None:
        """Index of the longest held prefix that every prompt extends by at least one token, if any."""
        best = None
        for index, tokens in enumerate(self.tokens):
            if best is not None and len(tokens) <= len(self.tokens[best]):
                continue
            if all(len(p) > len(tokens) and tuple(p[: len(tokens)]) == tokens for p in prompts):
                best = index
        return best

    @property
    def in_use(self) -> bool:
        return self.row_prefix is not None and bool((self.row_prefix >= 0).any())


_ACTIVE: contextvars.ContextVar[SharedPrefixes | None] = contextvars.ContextVar("cotspec_shared_prefixes", default=None)


def supported(model: PreTrainedModel) -> bool:
    """Decoder-only models whose attention runs through transformers' SDPA function."""
    return not model.config.is_encoder_decoder and model.config._attn_implementation == "sdpa"


@contextlib.contextmanager
def attending(model: PreTrainedModel, prefixes: SharedPrefixes) -> Iterator[None]:
    """Within this block the model's attention also reads `prefixes` (a no-op when no row has one)."""
    if not prefixes.in_use:
        yield
        return
    token = _ACTIVE.set(prefixes)
    model.config._attn_implementation = NAME
    try:
        yield
    finally:
        model.config._attn_implementation = "sdpa"
        _ACTIVE.reset(token)


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scale, masked) v and the log-sum-exp of each query's scores, for merging.

    query: [N, heads, Q, D]; key, value: [N, heads, L, D]; mask: None or [N, 1, Q, L] bool (True =
    attend). Returns ([N, heads, Q, D] float32, [N, heads, Q, 1] float32); a query that may attend to
    nothing (left padding) gets output 0 and log-sum-exp -inf, so merging gives it no weight.

    On a CPU, PyTorch's flash-attention kernel returns both in one pass without holding the [Q, L]
    scores (a private op: `scaled_dot_product_attention` does not return the log-sum-exp); elsewhere
    the scores are formed explicitly.
    """
    if query.device.type == "cpu" and FLASH_ON_CPU:
        additive = None
        if mask is not None:  # the kernel takes an additive mask of the query's dtype
            additive = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(~mask, float("-inf"))
        output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, attn_mask=additive, scale=scale
        )
        output, lse = output.float(), lse.unsqueeze(-1)
    else:
        scores = torch.matmul(query, key.transpose(-1, -2)).float() * scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        weights = torch.exp(scores - lse.masked_fill(torch.isinf(lse), 0.0))
        output = torch.matmul(weights.to(value.dtype), value).float()
    if mask is not None:  # fully masked queries: whatever was computed, they carry no weight
        empty = ~mask.any(dim=-1, keepdim=True)  # [N, 1, Q, 1]
        lse = lse.masked_fill(empty, float("-inf"))
        output = output.masked_fill(empty, 0.0)
    return output, lse


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query: [B, H, T, D]; key, value: [B, KV, S, D], the rows' own tokens (H a multiple of KV);
    attention_mask over those: None, [B, 1, T, S] bool (True = attend) or additive float.
    Returns ([B, T, H, D], None) like transformers' SDPA function.

    Query head h reads key-value head h // G (G = H / KV, the order `repeat_kv` expands to), so a key-value
    head's queries are ``query.view(B, KV, G, T, D)``.
    """
    prefixes = _ACTIVE.get()
    special = any(kwargs.get(name) is not None for name in ("softcap", "s_aux", "sinks", "position_bias"))
    if prefixes is None or dropout or special or query.shape[1] % key.shape[1]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    batch, heads, steps, dim = query.shape
    groups, own_length = key.shape[1], key.shape[2]
    per_group = heads // groups
    scale = dim**-0.5 if scaling is None else scaling
    queries = query.reshape(batch, groups, per_group * steps, dim)  # [B, KV, G*T, D]: a group's heads as rows

    # Over the rows' own tokens: [B, KV, G*T, S], masked per row (the mask broadcasts over KV and G).
    if attention_mask is None:
        if steps > 1:  # transformers drops the mask when causal alone is enough
            attention_mask = torch.ones(steps, own_length, dtype=torch.bool, device=query.device).tril(own_length - steps)
            attention_mask = attention_mask.expand(batch, 1, steps, own_length)
    if attention_mask is not None:
        if attention_mask.dtype != torch.bool:  # an additive mask: where it blocks, the bool one does
            attention_mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        attention_mask = attention_mask[:, :, None].expand(batch, 1, per_group, steps, own_length)
        attention_mask = attention_mask.reshape(batch, 1, per_group * steps, own_length)
    output, lse = _attend(queries, key, value, attention_mask, scale)

    # Over each prefix, all of its rows' queries at once: [1, KV, rows*G*T, D] against [1, KV, P, D].
    layer = module.layer_idx
    for index in range(len(prefixes.tokens)):
        rows = (prefixes.row_prefix == index).nonzero().squeeze(1)
        if not len(rows):
            continue
        prefix_keys, prefix_values = prefixes.keys[index][layer], prefixes.values[index][layer]
        mine = queries[rows].transpose(0, 1).reshape(1, groups, -1, dim)
        prefix_output, prefix_lse = _attend(mine, prefix_keys[None], prefix_values[None], None, scale)
        # back to [rows, KV, G*T, ...]
        prefix_output = prefix_output.view(groups, len(rows), per_group * steps, dim).transpose(0, 1)
        prefix_lse = prefix_lse.view(groups, len(rows), per_group * steps, 1).transpose(0, 1)
        own_output, own_lse = output[rows], lse[rows]
        merged_lse = torch.logaddexp(own_lse, prefix_lse)
        output[rows] = own_output * torch.exp(own_lse - merged_lse) + prefix_output * torch.exp(prefix_lse - merged_lse)
    # [B, KV, G, T, D] -> [B, T, KV, G, D] = [B, T, H, D]
    output = output.view(batch, groups, per_group, steps, dim).permute(0, 3, 1, 2, 4).reshape(batch, steps, heads, dim)
    return output.to(query.dtype), None


AttentionInterface.register(NAME, shared_prefix_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
