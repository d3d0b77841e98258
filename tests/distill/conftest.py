"""Fixtures for the training tests: tiny random students, a real sample store of teacher chains with a
tokenizer unlike the students', and real `cotspec build` outputs made from them.

The teacher is synthetic where a teacher model cannot run here: its chains are GSM8K's gold solutions,
its tokens come from a byte-level BPE trained here on GSM8K solutions (the students use another BPE, or
ByT5's bytes, so alignment has real work), and its top-5 at each position is made up: its own token at
p = 0.6, then the chain's next four tokens at p = 0.1 each.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from support.sample_rows import run_config
from support.tiny_models import save_model_dir, tiny_llama, tiny_t5
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import ByT5Tokenizer, PreTrainedTokenizerFast

from cotspec.align import TokenStyle, Vocab, piece_bytes
from cotspec.distill.config import load_config
from cotspec.formats import BuildConfig, build_training_data
from cotspec.formats.templates import gold_chain
from cotspec.store import SampleRow, SampleStore
from cotspec.tasks import gsm8k_dev_ids
from cotspec.tasks.math import load_gsm8k

sys.path.insert(0, str(Path(__file__).resolve().parent))  # distill_support, under any --import-mode

N_QUESTIONS = 12
TEACHER_K = 5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: OpenMP's second thread only adds barrier waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _byte_level_bpe(texts: list[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


@pytest.fixture(scope="session")
def train_examples(data_dir) -> list[Any]:
    """The first GSM8K training questions outside the paper's dev split."""
    dev = gsm8k_dev_ids(data_dir)
    return [ex for ex in load_gsm8k(data_dir, "train") if ex.id not in dev][:N_QUESTIONS]


@pytest.fixture(scope="session")
def teacher_tokenizer(data_dir) -> PreTrainedTokenizerFast:
    examples = load_gsm8k(data_dir, "train")[-400:]
    tok = _byte_level_bpe([gold_chain(ex) for ex in examples], 700, ["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def student_bpe_tokenizer(data_dir) -> PreTrainedTokenizerFast:
    """A different byte-level BPE (trained on questions, other size): most tokens differ from the teacher's."""
    examples = load_gsm8k(data_dir, "train")[:600]
    tok = _byte_level_bpe([ex.question for ex in examples], 500, ["<pad>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def synthetic_teacher_row(example: Any, index: int, teacher_vocab: Vocab, teacher_tokenizer: Any) -> SampleRow:
    text = gold_chain(example)
    ids = teacher_tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = teacher_vocab.text_tokens(ids)
    # Tokens that end inside a UTF-8 character are spelled `bytes:\\xe2\\x80`, as OpenAI-style APIs do.
    assert b"".join(piece_bytes(t, TokenStyle.TEXT) for t in tokens) == text.encode()
    n = len(tokens)
    top = [
        [(tokens[i], math.log(0.6))] + [(tokens[(i + j) % n], math.log(0.1)) for j in range(1, TEACHER_K)]
        for i in range(n)
    ]
    return SampleRow(
        question_id=example.id, sample_index=index, run_id=1, prompt_sha256="p" * 64, text=text,
        finish_reason="stop", extracted=example.answer, correct=True, prompt_tokens=100,
        completion_tokens=n, generated_tokens=n, tokens=tokens, top_logprobs=top,
    )  # fmt: skip


@pytest.fixture(scope="session")
def teacher_store(tmp_path_factory, train_examples, teacher_tokenizer) -> Path:
    """A real sample store: one correct chain with top-5 log-probs per question."""
    vocab = Vocab.from_tokenizer(teacher_tokenizer)
    path = tmp_path_factory.mktemp("teacher") / "teacher.db"
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions(train_examples)
        store.add_many([synthetic_teacher_row(ex, 0, vocab, teacher_tokenizer) for ex in train_examples])
    return path


@pytest.fixture(scope="session")
def kd_data(tmp_path_factory, teacher_store, data_dir) -> Path:
    """`cotspec build` output: zero-shot CoT rows with teacher top-5, zero-shot answer rows without."""
    out = tmp_path_factory.mktemp("build") / "kd"
    build_training_data(
        BuildConfig(out=out, store=teacher_store, formats=("zero_shot_answer", "zero_shot_cot"), data_dir=data_dir)
    )
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, student_bpe_tokenizer) -> Path:
    """The BPE student: tied embeddings (the head is the input embedding, as in SmolLM2), small init."""
    tok = student_bpe_tokenizer
    model = tiny_llama(
        tok, hidden_size=48, intermediate_size=96, initializer_range=0.02, tie_word_embeddings=True
    )
    return save_model_dir(model, tok, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """The seq2seq student on ByT5's bytes, without dropout so runs compare exactly."""
    tok = ByT5Tokenizer()
    model = tiny_t5(tok, d_model=48, d_kv=12, d_ff=96, dropout_rate=0.0, initializer_factor=1.0)
    return save_model_dir(model, tok, tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture
def train_config(tmp_path):
    """`load_config` with the fast settings every end-to-end test shares, plus the test's overrides."""

    def make(model: Path, data: Path, *overrides: str, out: Path | None = None):
        base = [
            f"student.model={model}",
            f"data.path={data}",
            f"data.cache_dir={tmp_path / 'token-cache'}",
            "data.max_length=512",
            "train.precision=fp32",
            "train.lr=1e-2",
            "train.warmup_steps=0",
            "train.lr_schedule=constant_with_warmup",
            "train.global_batch_size=4",
            "train.micro_batch_size=2",
            "train.log_every=1",
            "train.max_steps=6",
        ]
        return load_config(None, [*base, *overrides, f"out={out or tmp_path / 'run'}"])

    return make
