"""Tiny random models built in the test process (no files, no network).

- `ascii_tokenizer()`: byte-level BPE without merges over printable ASCII, space and newline: one token
  per character, every token decodes to exactly its character, so stop-string and token-string cases
  can be asserted exactly.
- `tiny_llama(tokenizer, **overrides)`: 2-layer Llama. `tiny_t5(tokenizer, **overrides)`: 2-layer T5
  (use with `ByT5Tokenizer()`). Keyword overrides go into the `LlamaConfig` / `T5Config`, so a test that
  needs another width or initialization says only what differs. The one place tests build tiny models.
- `save_model_dir(model, tokenizer, path)`: the pair as a `save_pretrained` model directory, for tests
  that pass `--model DIR` (or `student.model=DIR`) to a command.
- `write_tiny_llama_gguf(path)`: a 2-layer Llama with the same ASCII vocabulary as a GGUF file, written
  with llama.cpp's own `gguf` writer, so the GGUF path is tested in seconds rather than minutes.

Both use wide initializations: peaked next-token distributions leave no near-ties that batched and
unbatched float32 arithmetic could break differently under greedy decoding.

`single_torch_thread`: a fixture for modules that run tiny models. Their matmuls take microseconds, and
with two intra-op threads on a shared 2-core machine every op waits on a busy sibling thread: measured
0.1 s with one thread against 8-10 s with two for the same 5-prompt generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>"]


def ascii_tokenizer() -> PreTrainedTokenizerFast:
    """ids 0-2: <pad> <eos> <bos>; then one id per printable ASCII character, space and newline."""
    # Byte-level BPE spells bytes 33-126 as themselves, space as "Ġ" and newline as "Ċ" (GPT-2's map).
    alphabet = [chr(code) for code in range(33, 127)] + ["Ġ", "Ċ"]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_llama(tokenizer: PreTrainedTokenizerBase, seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    """A random 2-layer Llama over `tokenizer`'s vocabulary; `overrides` replace `LlamaConfig` fields."""
    torch.manual_seed(seed)
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # no weights depend on it; ByT5 prompts are one token per byte
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        initializer_range=0.3,
    )
    settings.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**settings)).eval()


def tiny_t5(tokenizer: PreTrainedTokenizerBase, seed: int = 0, **overrides: Any) -> T5ForConditionalGeneration:
    """A random 2-layer T5 over `tokenizer`'s vocabulary; `overrides` replace `T5Config` fields."""
    torch.manual_seed(seed)
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        d_model=64,
        d_ff=128,
        d_kv=16,
        num_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        initializer_factor=4.0,
    )
    settings.update(overrides)
    return T5ForConditionalGeneration(T5Config(**settings)).eval()


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> Path:
    """`model` and `tokenizer` saved into `path` as one `save_pretrained` directory; returns `path`."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama in GGUF (float32 tensors, GPT-2-style tokenizer metadata)."""
    import gguf

    hidden, intermediate, layers, heads, kv_heads = 64, 128, 2, 4, 2
    tokens = SPECIAL_TOKENS + [chr(code) for code in range(33, 127)] + ["Ġ", "Ċ", "Ġa"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(layers)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ a"])
    writer.add_pad_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_bos_token_id(2)

    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.3).astype(np.float32))

    kv_width = hidden // heads * kv_heads
    weight("token_embd.weight", len(tokens), hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for block in range(layers):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(hidden, np.float32))
        weight(f"blk.{block}.attn_q.weight", hidden, hidden)
        weight(f"blk.{block}.attn_k.weight", kv_width, hidden)
        weight(f"blk.{block}.attn_v.weight", kv_width, hidden)
        weight(f"blk.{block}.attn_output.weight", hidden, hidden)
        weight(f"blk.{block}.ffn_gate.weight", intermediate, hidden)
        weight(f"blk.{block}.ffn_up.weight", intermediate, hidden)
        weight(f"blk.{block}.ffn_down.weight", hidden, intermediate)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """A tiny Llama with the ByT5 byte tokenizer saved as a model directory, for `--model DIR` tests."""
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    model = tiny_llama(tokenizer, hidden_size=32, intermediate_size=64, initializer_range=0.02)
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("tiny-llama"))
