"""Tokenized rows -> padded tensors: inputs, labels, and the teacher's top-k as [B, T, k].

    collate = DistillCollator(pad_id=tokenizer.pad_token_id, is_seq2seq=False, top_k=5)
    batch = collate([dataset[i] for i in indices])

Padding is to the longest row of the batch only (length-grouped batching keeps rows of a batch alike,
so this wastes next to nothing). Label layout follows Hugging Face: decoder-only ``labels`` line up with
``input_ids`` (prompt and padding -100; the loss shifts by one), seq2seq ``labels`` are the decoder
targets with ``decoder_input_ids`` their right shift. The teacher tensors line up with ``labels``:

* ``cand_ids`` [B, T, k] int64: student ids of the teacher's candidates for the token at ``labels``,
  -1 pads; a position without teacher knowledge is one-hot: its own label in slot 0, log-prob 0.
* ``cand_logprobs`` [B, T, k] float32: the teacher's log-probs, -inf pads.
* ``soft`` [B, T] bool: the position holds the teacher's top-k.

They are present (`TEACHER_KEYS`) only when some row of the batch has teacher top-k, so cross-entropy
batches stay lean; their presence is all the loss asks (`DistillTrainer.compute_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..constants import IGNORE_INDEX, PAD_ID

TEACHER_KEYS = ("cand_ids", "cand_logprobs", "soft")
"""The batch keys that carry the teacher; a batch without them trains on cross-entropy alone."""


@dataclass
class DistillCollator:
    pad_id: int
    is_seq2seq: bool
    top_k: int = 0
    """Width of the candidate arrays in the dataset (0: no teacher top-k anywhere)."""
    decoder_start_id: int | None = None
    """Seq2seq: first decoder input token (T5: the pad token)."""
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.is_seq2seq and self.decoder_start_id is None:
            raise ValueError("a seq2seq collator needs decoder_start_id (model.config.decoder_start_token_id)")

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [row["prompt_ids"] for row in rows]
        targets = [row["target_ids"] for row in rows]
        if self.is_seq2seq:
            input_ids, attention_mask = self._pad(prompts, self.pad_id)
            labels, _ = self._pad(targets, IGNORE_INDEX)
            offsets = [0] * len(rows)
            decoder_input_ids = torch.cat(
                [torch.full((len(rows), 1), self.decoder_start_id, dtype=torch.long), labels[:, :-1]], dim=1
            )
            batch = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "decoder_input_ids": decoder_input_ids.masked_fill(decoder_input_ids == IGNORE_INDEX, self.pad_id),
                "labels": labels,
            }
        else:
            sequences = [list(p) + list(t) for p, t in zip(prompts, targets)]
            input_ids, attention_mask = self._pad(sequences, self.pad_id)
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            offsets = [len(p) for p in prompts]
            for i, (start, target) in enumerate(zip(offsets, targets)):
                labels[i, start : start + len(target)] = torch.as_tensor(target, dtype=torch.long)
            batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.top_k and any(len(row["soft"]) for row in rows):
            batch.update(self._teacher(rows, labels, offsets))
        return batch

    def _pad(self, sequences: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = np.full((len(sequences), width), value, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for i, seq in enumerate(sequences):
            out[i, : len(seq)] = seq
            mask[i, : len(seq)] = 1
        return torch.from_numpy(out), torch.from_numpy(mask)

    def _teacher(
        self, rows: Sequence[dict[str, Any]], labels: torch.Tensor, offsets: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        batch_size, width = labels.shape
        k = self.top_k
        cand_ids = np.full((batch_size, width, k), PAD_ID, dtype=np.int64)
        cand_logprobs = np.full((batch_size, width, k), -np.inf, dtype=np.float32)
        soft = np.zeros((batch_size, width), dtype=bool)
        # One-hot on the label everywhere first; rows with teacher top-k then overwrite their span.
        label_array = labels.numpy()
        supervised = label_array != IGNORE_INDEX
        cand_ids[..., 0] = np.where(supervised, label_array, PAD_ID)
        cand_logprobs[..., 0] = np.where(supervised, 0.0, -np.inf)
        for i, (row, start) in enumerate(zip(rows, offsets)):
            if not len(row["soft"]):
                continue
            length = len(row["soft"])
            cand_ids[i, start : start + length] = np.asarray(row["cand_ids"], dtype=np.int64).reshape(length, k)
            cand_logprobs[i, start : start + length] = np.asarray(row["cand_logprobs"], dtype=np.float32).reshape(length, k)
            soft[i, start : start + length] = row["soft"]
        return {  # the keys of TEACHER_KEYS
            "cand_ids": torch.from_numpy(cand_ids),
            "cand_logprobs": torch.from_numpy(cand_logprobs),
            "soft": torch.from_numpy(soft),
        }
