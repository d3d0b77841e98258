"""Collation: padding to the batch's longest row, label layout, teacher tensors lined up with labels."""

from __future__ import annotations

import math

import pytest
import torch

from cotspec.constants import IGNORE_INDEX, PAD_ID
from cotspec.distill.collator import TEACHER_KEYS, DistillCollator

PAD = 0


def row(prompt, target, soft=(), cands=None):
    """A tokenized row; `cands` is a [T][k] list when the row has teacher top-k."""
    return {
        "prompt_ids": list(prompt),
        "target_ids": list(target),
        "soft": list(soft),
        "cand_ids": [c for position in cands for c, _ in position] if cands else [],
        "cand_logprobs": [lp for position in cands for _, lp in position] if cands else [],
    }


def test_decoder_only_labels_cover_the_target_only():
    collate = DistillCollator(pad_id=PAD, is_seq2seq=False)
    batch = collate([row([5, 6, 7], [8, 9, 2]), row([5], [3, 2])])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 2], [5, 3, 2, PAD, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    x = IGNORE_INDEX
    assert batch["labels"].tolist() == [[x, x, x, 8, 9, 2], [x, 3, 2, x, x, x]]
    assert not set(TEACHER_KEYS) & batch.keys()  # no teacher rows: a lean cross-entropy batch


def test_seq2seq_decoder_inputs_are_the_shifted_labels():
    collate = DistillCollator(pad_id=PAD, is_seq2seq=True, decoder_start_id=PAD)
    batch = collate([row([5, 6, 7, 1], [8, 9, 1]), row([5, 1], [3, 1])])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [5, 1, PAD, PAD]]
    assert batch["labels"].tolist() == [[8, 9, 1], [3, 1, IGNORE_INDEX]]
    assert batch["decoder_input_ids"].tolist() == [[PAD, 8, 9], [PAD, 3, 1]]


def test_teacher_tensors_line_up_with_labels_and_fill_one_hot_elsewhere():
    lp = math.log(0.5)
    with_teacher = row(
        [5, 6], [8, 9, 2], soft=[True, False, False],
        cands=[[(8, lp), (4, lp)], [(9, 0.0), (-1, -math.inf)], [(2, 0.0), (-1, -math.inf)]],
    )  # fmt: skip
    plain = row([5], [3, 2])
    batch = DistillCollator(pad_id=PAD, is_seq2seq=False, top_k=2)([with_teacher, plain])
    assert set(TEACHER_KEYS) <= batch.keys()
    cand_ids, cand_logprobs, soft = batch["cand_ids"], batch["cand_logprobs"], batch["soft"]
    assert cand_ids.shape == (2, 5, 2) and cand_logprobs.dtype == torch.float32
    # Row 0: the teacher's candidates exactly at the target's label positions (2, 3, 4).
    assert cand_ids[0, 2].tolist() == [8, 4] and soft[0].tolist() == [False, False, True, False, False]
    assert cand_ids[0, 3].tolist() == [9, PAD_ID]
    # Row 1 has no teacher top-k: one-hot on its labels (slot 0, log-prob 0), padding elsewhere.
    assert cand_ids[1, :, 0].tolist() == [PAD_ID, 3, 2, PAD_ID, PAD_ID]
    assert cand_logprobs[1, 1].tolist() == [0.0, -math.inf]
    assert not soft[1].any()
    labels = batch["labels"]
    supervised = labels != IGNORE_INDEX
    assert torch.equal(cand_ids[..., 0][supervised & ~soft], labels[supervised & ~soft])
    assert torch.isinf(cand_logprobs[~supervised]).all()


def test_pad_to_multiple():
    batch = DistillCollator(pad_id=PAD, is_seq2seq=False, pad_to_multiple_of=8)([row([5, 6, 7], [8, 2])])
    assert batch["input_ids"].shape == (1, 8)


def test_seq2seq_needs_a_decoder_start():
    with pytest.raises(ValueError, match="decoder_start_id"):
        DistillCollator(pad_id=PAD, is_seq2seq=True)
