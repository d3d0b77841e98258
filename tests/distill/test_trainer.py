"""Training end to end with tiny random students (CPU, fp32): the loss falls, checkpoints are plain
transformers models, a resumed run is the uninterrupted run, and the loss does not depend on how a global
batch is cut into micro-batches."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from cotspec.distill.config import LossConfig
from cotspec.distill.losses import cross_entropy_loss, topk_forward_kl
from cotspec.distill.run import run_training
from cotspec.distill.trainer import chunked_token_loss, head_on_positions, summed_token_loss, supervised_positions
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


def test_loss_does_not_depend_on_micro_batching(tiny_llama_dir, kd_data, train_config, tmp_path):
    """Global batch 4 as 1 x 4 rows or 2 x 2 rows (gradient accumulation): same per-step losses (1e-5)."""
    one = run_training(train_config(tiny_llama_dir, kd_data, "train.micro_batch_size=4", "train.max_steps=3", out=tmp_path / "a"))
    two = run_training(train_config(tiny_llama_dir, kd_data, "train.micro_batch_size=2", "train.max_steps=3", out=tmp_path / "b"))
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
    cand_ids = torch.where(soft[:, None], torch.randint(0, vocab, (n, k)), torch.full((n, k), -1))
    cand_ids[~soft, 0] = targets[~soft]
    cand_logprobs = torch.where(cand_ids >= 0, torch.log(torch.tensor(0.3)), torch.tensor(float("-inf")))
    cand_logprobs[~soft, 0] = 0.0
    teacher = {"cand_ids": cand_ids, "cand_logprobs": cand_logprobs, "soft": soft}
    config = LossConfig(kd_weight=0.7)  # the general path: KD + CE on soft tokens, CE on the rest

    whole = summed_token_loss(head(hidden), targets, teacher, config)
    whole_grads = torch.autograd.grad(whole, [hidden, head.weight])
    chunked = chunked_token_loss(head, hidden, targets, teacher, config, 10, contextlib.nullcontext)
    chunked_grads = torch.autograd.grad(chunked, [hidden, head.weight])
    torch.testing.assert_close(chunked, whole)
    for got, expected in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(got, expected)


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


def test_summed_loss_is_kd_on_soft_tokens_plus_ce_on_the_rest():
    torch.manual_seed(0)
    n, vocab, k = 7, 11, 3
    logits = torch.randn(n, vocab)
    targets = torch.randint(0, vocab, (n,))
    soft = torch.tensor([True, False, True, True, False, False, True])
    cand_ids = torch.full((n, k), -1)
    cand_logprobs = torch.full((n, k), float("-inf"))
    for i in range(n):
        if soft[i]:
            cand_ids[i] = torch.randperm(vocab)[:k]
            cand_logprobs[i] = torch.log(torch.tensor([0.5, 0.3, 0.1]))
        else:  # one-hot on the label, as the collator fills positions without teacher knowledge
            cand_ids[i, 0], cand_logprobs[i, 0] = targets[i], 0.0
    teacher = {"cand_ids": cand_ids, "cand_logprobs": cand_logprobs, "soft": soft}
    kd = topk_forward_kl(logits[soft][None], cand_ids[soft][None], cand_logprobs[soft][None], torch.ones(1, 4, dtype=torch.bool))
    ce = cross_entropy_loss(logits[~soft][None], targets[~soft][None])
    expected = 4 * kd + 3 * ce
    for weight_path in ({}, {"divergence": "forward_kl", "kd_weight": 1.0}):
        got = summed_token_loss(logits, targets, teacher, LossConfig(**weight_path))
        torch.testing.assert_close(got, expected)
    # The general path (kd_weight < 1) mixes CE into the soft tokens.
    half = summed_token_loss(logits, targets, teacher, LossConfig(kd_weight=0.5))
    ce_soft = cross_entropy_loss(logits[soft][None], targets[soft][None])
    torch.testing.assert_close(half, 4 * (0.5 * kd + 0.5 * ce_soft) + 3 * ce)
    assert torch.allclose(summed_token_loss(logits, targets, None, LossConfig()), n * cross_entropy_loss(logits[None], targets[None]))


def test_supervised_positions_shift_for_decoder_only():
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    assert supervised_positions(labels, is_seq2seq=False).tolist() == [[False, True, True, False, False]]
    assert supervised_positions(labels, is_seq2seq=True).tolist() == [[False, False, True, True, False]]
