"""Distillation: specialize a student on a teacher's chains (sample and distribution matching)."""

from __future__ import annotations

from .losses import (
    IGNORE_INDEX,
    DistillLoss,
    cross_entropy_loss,
    distill_loss,
    topk_forward_kl,
    topk_generalized_jsd,
    topk_reverse_kl,
)

__all__ = [
    "IGNORE_INDEX",
    "DistillLoss",
    "cross_entropy_loss",
    "distill_loss",
    "topk_forward_kl",
    "topk_generalized_jsd",
    "topk_reverse_kl",
]
