"""Training end to end with tiny random students (CPU, fp32): the loss falls, checkpoints are plain
transformers models, a resumed run is the uninterrupted run, and the loss does not depend on how a global
batch is cut into micro-batches."""

from __future__ import annotations

import contextlib
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, get_args

import pytest
import torch
from support.tiny_models import ascii_tokenizer, tiny_llama, tiny_t5
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, ByT5Tokenizer, TrainingArguments

from cotspec.constants import PAD_ID
from cotspec.distill.collator import TEACHER_KEYS, DistillCollator
from cotspec.distill.config import LossConfig
from cotspec.distill.losses import Divergence, ForwardMode, Support, distill_loss
from cotspec.distill.run import run_training
from cotspec.distill.trainer import (
    DistillTrainer,
    chunked_token_loss,
    head_on_positions,
    summed_token_loss,
    supervised_positions,
)
from distill_support import assert_same_weights, step_losses


def assert_loss_falls(losses: dict[int, float], steps_per_epoch: int) -> None:
    """Mean step loss of the second epoch well below the first's. Per-step losses alternate between
    formats (answer-only and CoT steps differ in scale); an epoch holds the same rows each time."""
    assert len(losses) == 2 * steps_per_epoch
    first = sum(losses[s] for s in range(1, steps_per_epoch + 1)) / steps_per_epoch
    second = sum(losses[s] for s in range(steps_per_epoch + 1, 2 * steps_per_epoch + 1)) / steps_per_epoch
    assert second < 0.85 * first, (first, second)


def test_decoder_only_kd_with_a_differently_tokenized_teacher(tiny_llama_dir, kd_data, train_config, tmp_path):
    config = train_config(tiny_llama_dir, kd_data, "train.max_steps=12", "train.save_every=6")
    summary = run_training(config)

    # The teacher's top-5 reached the student through alignment (BPE teacher, other BPE student).
    assert summary["data"]["top_k"] == 5
    assert 0.3 < summary["data"]["soft_coverage"] < 1.0
    assert_loss_falls(step_losses(tmp_path / "run"), steps_per_epoch=6)

    # The final model and every checkpoint load with plain transformers, tokenizer included.
    for directory in (tmp_path / "run" / "model", tmp_path / "run" / "checkpoint-6"):
        model = AutoModelForCausalLM.from_pretrained(directory)
        assert (directory / "tokenizer.json").is_file()
        assert model.config.vocab_size > 0
    assert_same_weights(tmp_path / "run" / "model", tmp_path / "run" / "checkpoint-12", AutoModelForCausalLM)
    assert (tmp_path / "run" / "config.yaml").read_text().count("objective: kd") == 1


def test_seq2seq_t5_student(tiny_t5_dir, kd_data, train_config, tmp_path):
    """ByT5's byte vocabulary against the teacher's BPE: soft targets only where a teacher token is one byte."""
    summary = run_training(train_config(tiny_t5_dir, kd_data, "train.max_steps=12"))
    assert summary["data"]["top_k"] == 5
    assert 0.0 < summary["data"]["soft_coverage"] < 0.6
    assert_loss_falls(step_losses(tmp_path / "run"), steps_per_epoch=6)
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "run" / "model")
    assert model.config.is_encoder_decoder


def test_lora_adapters_are_merged_into_a_plain_final_model(tiny_llama_dir, kd_data, train_config, tmp_path):
    summary = run_training(train_config(tiny_llama_dir, kd_data, "lora.enabled=true", "lora.r=4", "train.max_steps=3"))
    assert summary["steps"] == 3
    final = tmp_path / "run" / "model"
    assert not (final / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(final)
    assert not any("lora" in name for name in trained.state_dict())
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    changed = [n for n, p in trained.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    # Adapters on every linear layer, merged: projections changed, embeddings and norms did not.
    assert changed and all(n.endswith("proj.weight") for n in changed)
    assert (tmp_path / "run" / "checkpoint-3" / "adapter_config.json").is_file()  # resumable adapters


def test_resume_reproduces_the_uninterrupted_run(tiny_llama_dir, kd_data, train_config, tmp_path):
    """fp32 on CPU: the resumed steps' losses and the final weights equal the uninterrupted run's exactly."""
    straight = tmp_path / "straight"
    run_training(train_config(tiny_llama_dir, kd_data, "train.save_every=3", out=straight))

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-6")  # as if it had stopped right after checkpoint-3
    shutil.rmtree(resumed / "model")
    summary = run_training(train_config(tiny_llama_dir, kd_data, "train.save_every=3", out=resumed))

    assert summary["resumed_from"].endswith("checkpoint-3")
    assert step_losses(resumed) == step_losses(straight)
    assert_same_weights(straight / "model", resumed / "model", AutoModelForCausalLM)


@pytest.mark.parametrize(
    "loss", [(), ("loss.divergence=reverse_kl", "loss.kd_weight=0.5")], ids=["default", "reverse-kl-mix"]
)
def test_loss_does_not_depend_on_micro_batching(tiny_llama_dir, kd_data, train_config, tmp_path, loss):
    """Global batch 4 as 1 x 4 rows or 2 x 2 rows (gradient accumulation): same per-step losses (1e-5)."""

    def run(micro_batch_size: int, out: Path) -> dict:
        overrides = (f"train.micro_batch_size={micro_batch_size}", "train.max_steps=3", *loss)
        return run_training(train_config(tiny_llama_dir, kd_data, *overrides, out=out))

    one, two = run(4, tmp_path / "a"), run(2, tmp_path / "b")
    assert one["steps"] == two["steps"] == 3
    a, b = step_losses(tmp_path / "a"), step_losses(tmp_path / "b")
    assert a.keys() == b.keys()
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-5)


def test_chunked_head_trains_exactly_like_the_whole_head(tiny_llama_dir, kd_data, train_config, tmp_path):
    """loss.chunk_tokens=16 (many chunks per micro-batch, recomputed in backward) vs all logits at once."""
    run_training(train_config(tiny_llama_dir, kd_data, "loss.chunk_tokens=16", "train.max_steps=3", out=tmp_path / "chunked"))
    run_training(train_config(tiny_llama_dir, kd_data, "loss.chunk_tokens=0", "train.max_steps=3", out=tmp_path / "whole"))
    chunked, whole = step_losses(tmp_path / "chunked"), step_losses(tmp_path / "whole")
    assert chunked.keys() == whole.keys() == {1, 2, 3}
    for step in chunked:
        assert chunked[step] == pytest.approx(whole[step], abs=1e-5)


def test_chunked_token_loss_matches_value_and_gradients():
    torch.manual_seed(0)
    n, hidden_size, vocab, k = 37, 8, 23, 3
    head = torch.nn.Linear(hidden_size, vocab, bias=False)
    hidden = torch.randn(n, hidden_size, requires_grad=True)
    targets = torch.randint(0, vocab, (n,))
    soft = torch.rand(n) < 0.6
    cand_ids = torch.where(soft[:, None], torch.randperm(vocab)[:k].expand(n, k), torch.full((n, k), PAD_ID))
    cand_ids[~soft, 0] = targets[~soft]
    cand_logprobs = torch.where(cand_ids >= 0, torch.log(torch.tensor(0.3)), torch.tensor(float("-inf")))
    cand_logprobs[~soft, 0] = 0.0
    teacher = {"cand_ids": cand_ids, "cand_logprobs": cand_logprobs, "soft": soft}
    for config in LOSS_SETTINGS:
        whole = summed_token_loss(head(hidden), targets, teacher, config)
        whole_grads = torch.autograd.grad(whole, [hidden, head.weight])
        chunked = chunked_token_loss(head, hidden, targets, teacher, config, 10, contextlib.nullcontext)
        chunked_grads = torch.autograd.grad(chunked, [hidden, head.weight])
        torch.testing.assert_close(chunked, whole, msg=str(config))
        for got, expected in zip(chunked_grads, whole_grads):
            torch.testing.assert_close(got, expected, msg=str(config))


def test_head_sees_only_the_selected_positions(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.randint(5, 400, (2, 9))
    positions = torch.zeros(2, 9, dtype=torch.bool)
    positions[0, 3:7] = True
    positions[1, 1] = True
    full = model(input_ids=ids).logits
    with head_on_positions(model, positions):
        selected = model(input_ids=ids).logits
    assert selected.shape == (5, model.config.vocab_size)
    torch.testing.assert_close(selected, full[positions])


# --- the loss through the trainer, against dense references -----------------------------------------

K = 4
"""Candidate slots per position in the batches below."""

LOSS_SETTINGS = [
    LossConfig(),  # the paper's: forward KL on the unnormalized top-k, kd_weight 1
    LossConfig(forward_mode="renormalized"),
    LossConfig(forward_mode="tail", kd_weight=0.3),
    LossConfig(kd_weight=0.0),
    LossConfig(divergence="reverse_kl", support="renormalized"),
    LossConfig(divergence="reverse_kl", support="tail", kd_weight=0.6),
    LossConfig(divergence="generalized_jsd", support="renormalized", beta=0.3),
    LossConfig(divergence="generalized_jsd", support="tail", beta=0.7, kd_weight=0.5),
]


def test_loss_settings_reach_every_divergence_of_the_losses_module():
    """So a divergence or mode added to losses.py fails here until the tests below exercise it."""
    covered = {(c.divergence, c.forward_mode if c.divergence == "forward_kl" else c.support) for c in LOSS_SETTINGS}
    options = {
        "forward_kl": get_args(ForwardMode),
        "reverse_kl": get_args(Support),
        "generalized_jsd": get_args(Support),
    }
    assert set(options) == set(get_args(Divergence))
    assert covered == {(divergence, option) for divergence, values in options.items() for option in values}


def tokenized_row(g: torch.Generator, vocab_size: int, prompt_len: int, target_len: int, with_teacher: bool) -> dict:
    """A row as `tokenize_rows` writes it. With a teacher: top-K candidates (listed mass 0.9, so the
    teacher leaves a tail) on most target tokens, only two on the third, one-hot on every third token
    from the second on (no teacher knowledge there, as `align_chain` writes it)."""
    prompt = torch.randint(3, vocab_size, (prompt_len,), generator=g).tolist()
    target = torch.randint(3, vocab_size, (target_len,), generator=g).tolist()
    row = {"prompt_ids": prompt, "target_ids": target, "soft": [], "cand_ids": [], "cand_logprobs": []}
    if not with_teacher:
        return row
    for t, token in enumerate(target):
        soft = t % 3 != 1
        if soft:
            width = 2 if t == 2 else K
            ids = (torch.randperm(vocab_size - 3, generator=g)[:width] + 3).tolist()
            probs = torch.rand(width, generator=g, dtype=torch.float64)
            logprobs = (0.9 * probs / probs.sum()).log().float().tolist()  # float32, as the batch holds them
        else:
            ids, logprobs = [token], [0.0]
        row["soft"].append(soft)
        row["cand_ids"] += ids + [PAD_ID] * (K - len(ids))
        row["cand_logprobs"] += logprobs + [-math.inf] * (K - len(ids))
    return row


def tokenized_rows(vocab_size: int, with_teacher: bool = True) -> list[dict]:
    """Three rows of different lengths; the middle one never has teacher top-k."""
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 7, with_teacher), (2, 3, False), (3, 5, with_teacher)]
    return [tokenized_row(g, vocab_size, *shape) for shape in shapes]


class AtTargets(NamedTuple):
    """A batch at its N target tokens, in row order, read from the rows and a full forward pass."""

    logits: torch.Tensor  # [N, V] float64
    targets: torch.Tensor  # [N]
    cand_ids: torch.Tensor  # [N, K]; one-hot on the target where the row has no teacher top-k
    cand_logprobs: torch.Tensor  # [N, K] float32
    soft: torch.Tensor  # [N] bool


def at_targets(model: torch.nn.Module, batch: dict, rows: list[dict], is_seq2seq: bool) -> AtTargets:
    inputs = {key: value for key, value in batch.items() if key not in ("labels", *TEACHER_KEYS)}
    with torch.no_grad():
        full = model(**inputs).logits.double()
    logits, targets, cand_ids, cand_logprobs, soft = [], [], [], [], []
    for i, row in enumerate(rows):
        for j, token in enumerate(row["target_ids"]):
            # A decoder-only model's logits at position p predict the token at p + 1.
            logits.append(full[i, j if is_seq2seq else len(row["prompt_ids"]) + j - 1])
            targets.append(token)
            if row["soft"]:
                cand_ids.append(row["cand_ids"][j * K : (j + 1) * K])
                cand_logprobs.append(row["cand_logprobs"][j * K : (j + 1) * K])
                soft.append(row["soft"][j])
            else:
                cand_ids.append([token] + [PAD_ID] * (K - 1))
                cand_logprobs.append([0.0] + [-math.inf] * (K - 1))
                soft.append(False)
    return AtTargets(
        torch.stack(logits), torch.tensor(targets), torch.tensor(cand_ids),
        torch.tensor(cand_logprobs, dtype=torch.float32), torch.tensor(soft),
    )  # fmt: skip


def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) of two probability vectors, a > 0 everywhere."""
    return (a * (a.log() - b.log())).sum()


def dense_divergence(log_q: torch.Tensor, ids: torch.Tensor, p: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """One position's divergence: student log-probs log_q [V], teacher probabilities p [k] of ids [k]."""
    q = log_q.exp()
    if config.divergence == "forward_kl" and config.forward_mode == "unnormalized":
        return (p * (p.log() - log_q[ids])).sum()  # the teacher's numbers as given: may be negative
    if config.divergence == "forward_kl" and config.forward_mode == "renormalized":
        p_k = p / p.sum()  # 0 outside the candidates, so only their terms of KL(P~ || Q) remain
        return (p_k * (p_k.log() - log_q[ids])).sum()
    support = "tail" if config.divergence == "forward_kl" else config.support
    if support == "renormalized":  # both distributions conditioned on the candidates
        p_s, q_s = p / p.sum(), q[ids] / q[ids].sum()
    else:  # the candidates plus one bucket for every other token
        p_s = torch.cat([p, 1 - p.sum().view(1)])
        q_s = torch.cat([q[ids], 1 - q[ids].sum().view(1)])
    if config.divergence == "forward_kl":
        return kl(p_s, q_s)
    if config.divergence == "reverse_kl":
        return kl(q_s, p_s)
    m = config.beta * p_s + (1 - config.beta) * q_s
    return config.beta * kl(p_s, m) + (1 - config.beta) * kl(q_s, m)


def dense_reference_loss(at: AtTargets, config: LossConfig) -> torch.Tensor:
    """Mean over the target tokens, token by token over the whole vocabulary in float64: the kd_weight
    mix where the teacher's top-k is known, cross-entropy elsewhere."""
    per_token = []
    for logits, target, ids, logprobs, soft in zip(*at):
        log_q = logits.log_softmax(-1)
        cross_entropy = -log_q[target]
        if not soft:
            per_token.append(cross_entropy)
            continue
        real = ids >= 0
        divergence = dense_divergence(log_q, ids[real], logprobs[real].double().exp(), config)
        per_token.append((1 - config.kd_weight) * cross_entropy + config.kd_weight * divergence)
    return torch.stack(per_token).mean()


class Student(NamedTuple):
    trainer: DistillTrainer
    collator: DistillCollator

    @property
    def vocab_size(self) -> int:
        return self.trainer.model.config.vocab_size

    def loss(self, batch: dict, config: LossConfig) -> torch.Tensor:
        """The trainer's loss for one batch on its own: mean over its target tokens."""
        self.trainer.loss_config = config
        return self.trainer.compute_loss(self.trainer.model, dict(batch)).detach()  # it pops keys


@pytest.fixture(scope="module", params=["decoder-only", "seq2seq"])
def student(request, tmp_path_factory) -> Student:
    if request.param == "decoder-only":
        tokenizer = ascii_tokenizer()
        model = tiny_llama(tokenizer, initializer_range=0.1)
        collator = DistillCollator(pad_id=tokenizer.pad_token_id, is_seq2seq=False, top_k=K)
    else:
        tokenizer = ByT5Tokenizer()
        model = tiny_t5(tokenizer, dropout_rate=0.0, initializer_factor=1.0)
        collator = DistillCollator(
            pad_id=tokenizer.pad_token_id, is_seq2seq=True, top_k=K,
            decoder_start_id=model.config.decoder_start_token_id,
        )  # fmt: skip
    args = TrainingArguments(output_dir=str(tmp_path_factory.mktemp("trainer")), use_cpu=True, report_to=[])
    trainer = DistillTrainer(
        model=model, args=args, loss_config=LossConfig(), is_seq2seq=collator.is_seq2seq, row_lengths=[], row_formats=[]
    )
    return Student(trainer, collator)


def test_trainer_loss_matches_dense_references_for_every_divergence(student):
    rows = tokenized_rows(student.vocab_size)
    batch = student.collator(rows)
    at = at_targets(student.trainer.model, batch, rows, student.collator.is_seq2seq)
    assert at.soft.any() and not at.soft.all()
    for config in LOSS_SETTINGS:
        expected = dense_reference_loss(at, config)
        for chunk_tokens in (0, 3):  # all target logits at once; head and loss three tokens at a time
            got = student.loss(batch, replace(config, chunk_tokens=chunk_tokens))
            torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6, msg=f"{config}")


def test_trainer_loss_is_distill_loss(student):
    """The trainer computes `losses.distill_loss` (reduction "mean" for one batch on its own): a second
    implementation in the trainer would drift from the tested one."""
    rows = tokenized_rows(student.vocab_size)
    batch = student.collator(rows)
    at = at_targets(student.trainer.model, batch, rows, student.collator.is_seq2seq)
    for config in LOSS_SETTINGS:
        expected = distill_loss(
            at.logits.float(), at.targets, at.cand_ids, at.cand_logprobs, soft=at.soft,
            kd_weight=config.kd_weight, divergence=config.divergence, mode=config.forward_mode,
            support=config.support, beta=config.beta,
        ).loss  # fmt: skip
        torch.testing.assert_close(student.loss(batch, config), expected, rtol=1e-5, atol=1e-6, msg=f"{config}")


def test_a_batch_without_teacher_tensors_is_cross_entropy_whatever_the_loss_settings(student):
    rows = tokenized_rows(student.vocab_size, with_teacher=False)
    batch = student.collator(rows)
    assert not set(TEACHER_KEYS) & batch.keys()
    at = at_targets(student.trainer.model, batch, rows, student.collator.is_seq2seq)
    expected = -at.logits.log_softmax(-1).gather(-1, at.targets[:, None]).mean()
    for config in (LossConfig(), LossConfig(divergence="reverse_kl", kd_weight=0.5)):
        torch.testing.assert_close(student.loss(batch, config).double(), expected, rtol=1e-5, atol=1e-6)


def test_supervised_positions_shift_for_decoder_only():
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    assert supervised_positions(labels, is_seq2seq=False).tolist() == [[False, True, True, False, False]]
    assert supervised_positions(labels, is_seq2seq=True).tolist() == [[False, False, True, True, False]]
