"""Distillation losses: sample matching (cross-entropy) and distribution matching on teacher top-k.

Pure tensor functions in the style of torchtune's kd_losses. Conventions shared by all of them:

* ``student_logits[b, t]`` is the distribution for the token at ``labels[b, t]`` /
  ``cand_ids[b, t]``: the caller has already shifted (the collator lines targets up with logits).
  Shapes are written [B, T, ...]; any leading shape works the same ([N, V] logits of selected
  positions with [N] labels, [N, k] candidates and an [N] mask).
* Softmax and log-softmax run in float32 whatever the logits' dtype (bf16 log-probs are too coarse for
  a KL between close distributions).
* The teacher is given only as its top-k at each position: ``cand_ids`` (student vocabulary ids, -1 pads)
  and ``cand_logprobs`` (the teacher's log-probs, -inf pads), as `cotspec.align.AlignedTargets` makes
  them. A dense teacher distribution over the vocabulary is never built; the student's log-probs are
  gathered at the candidates. Candidate ids must be distinct within a row (`align_chain` guarantees it).
* Reduction is the mean over positions where ``mask`` is true and the row has at least one candidate.
  With no such position the loss is exactly 0 and still has a grad_fn (so a fully padded micro-batch
  steps cleanly under DDP/accelerate).

What the top-k versions are, precisely. Let P be the teacher's full next-token distribution (unknown
beyond the k candidates K), Q the student's.

* ``forward_kl(mode="unnormalized")``: sum_{v in K} p_v (log p_v - log q_v), the teacher probs as given
  (they sum to < 1). This is the paper's objective (Fu et al. 2023 match Codex's top-5): its gradient
  is that of cross-entropy to the sub-normalized teacher. It is *not* a divergence: it can be negative.
* ``forward_kl(mode="renormalized")``: KL(P~ || Q) over the whole vocabulary, where P~ is the teacher
  truncated to K and renormalized. A true KL, to a sharpened teacher.
* ``forward_kl(mode="tail")``: KL over k + 1 buckets, the k candidates and one "everything else" bucket
  holding the teacher's leftover 1 - sum p_v and the student's mass outside K. A true KL between the
  coarsened P and Q; by the data-processing inequality a lower bound on the full KL(P || Q), and the
  only one of the three that uses the teacher's numbers without distorting them.
* ``reverse_kl`` and ``generalized_jsd`` need the teacher's mass wherever the student has some, so they
  are computed on a finite support: ``support="renormalized"`` is K with both P and Q renormalized over
  it (the divergence between the two distributions conditioned on K); ``support="tail"`` is the same
  k + 1 buckets as above (exact divergence of the coarsened distributions, again a lower bound on the
  full one).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
"""Label value excluded from every loss (Hugging Face's convention)."""

ForwardMode = Literal["unnormalized", "renormalized", "tail"]
Support = Literal["renormalized", "tail"]
Divergence = Literal["forward_kl", "reverse_kl", "generalized_jsd"]

# log of float32's smallest normal: where a bucket's probability is 0 but its log is needed (reverse KL
# against a teacher that left no tail), a large finite penalty instead of inf.
_LOG_TINY = math.log(torch.finfo(torch.float32).tiny)


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Sample matching: mean token cross-entropy.

    logits: [B, T, V], any float dtype (computed in float32).
    labels: [B, T] student token ids, ``ignore_index`` where excluded.
    Returns a scalar; 0 (with grad) when every label is ignored.
    """
    vocab = logits.shape[-1]
    summed = F.cross_entropy(
        logits.reshape(-1, vocab).float(), labels.reshape(-1).long(), ignore_index=ignore_index, reduction="sum"
    )
    # reduction="mean" would be 0/0 = nan on an all-ignored batch; sum / max(count, 1) is 0 there.
    return summed / (labels != ignore_index).sum().clamp(min=1)


class _TopK(NamedTuple):
    """Teacher and student on the teacher's candidates, float32, all [B, T, k]."""

    valid: torch.Tensor  # bool: a real candidate (not padding)
    teacher_logp: torch.Tensor  # log p_v; 0 where not valid (finite, so 0 * it stays 0)
    student_logp: torch.Tensor  # log q_v over the full vocabulary; 0 where not valid
    student_logits: torch.Tensor  # z_v; 0 where not valid
    student_logz: torch.Tensor  # [B, T] logsumexp of the student's logits


def _gather_topk(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, cand_logprobs: torch.Tensor
) -> _TopK:
    if cand_ids.shape != cand_logprobs.shape or cand_ids.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            f"shapes do not fit: logits {tuple(student_logits.shape)}, cand_ids {tuple(cand_ids.shape)}, "
            f"cand_logprobs {tuple(cand_logprobs.shape)}"
        )
    logits = student_logits.float()
    teacher = cand_logprobs.float()
    valid = (cand_ids >= 0) & torch.isfinite(teacher)
    logz = torch.logsumexp(logits, dim=-1)
    # Padding (-1) gathers id 0, then is zeroed: every tensor below is finite, so no nan reaches a grad.
    z = logits.gather(-1, cand_ids.clamp(min=0).long())
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    return _TopK(
        valid=valid,
        teacher_logp=torch.where(valid, teacher, zero),
        student_logp=torch.where(valid, z - logz.unsqueeze(-1), zero),
        student_logits=torch.where(valid, z, zero),
        student_logz=logz,
    )


def _masked_logsumexp(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim of x where valid; -inf for a row with nothing valid."""
    return torch.logsumexp(x.masked_fill(~valid, -math.inf), dim=-1)


def _log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(log_p)) for log_p <= 0, accurate at both ends (Maechler 2012); -inf at log_p = 0."""
    log_p = log_p.clamp(max=0.0)
    return torch.where(
        log_p > -math.log(2.0),
        torch.log(-torch.expm1(log_p)),
        torch.log1p(-torch.exp(log_p)),
    )


def _student_log_tail(student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK) -> torch.Tensor:
    """[B, T] log of the student's mass outside the candidates; -inf when they cover the vocabulary.

    Computed as logsumexp over the logits with the candidates knocked out, not as log(1 - sum q_v):
    when the student is confident, 1 - sum q_v is below float32's resolution near 1 and would be noise.
    Costs one more float32 [B, T, V] temporary (the student's own logits, never the teacher's).
    """
    # Padding slots must knock out nothing: point them at the row's first real candidate.
    first_real = top.valid.int().argmax(dim=-1, keepdim=True)
    fill = cand_ids.gather(-1, first_real).expand_as(cand_ids)
    knock = torch.where(top.valid, cand_ids, fill).clamp(min=0).long()
    outside = student_logits.float().scatter(-1, knock, -math.inf)
    return torch.logsumexp(outside, dim=-1) - top.student_logz


def _with_tail(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k + 1 bucket distributions: (valid, log P, log Q), each [B, T, k + 1].

    The extra bucket is "every other token". It is absent (not valid) where the candidates already
    cover the whole vocabulary; there the teacher's leftover is float rounding, not mass.
    """
    student_tail = _student_log_tail(student_logits, cand_ids, top)
    teacher_listed = _masked_logsumexp(top.teacher_logp, top.valid)
    teacher_tail = _log1mexp(teacher_listed)  # -inf when the listed mass reaches 1
    has_tail = torch.isfinite(student_tail) & top.valid.any(dim=-1)
    zero = torch.zeros((), dtype=torch.float32, device=student_tail.device)
    valid = torch.cat([top.valid, has_tail.unsqueeze(-1)], dim=-1)
    log_p = torch.cat([top.teacher_logp, torch.where(has_tail, teacher_tail, zero).unsqueeze(-1)], -1)
    log_q = torch.cat([top.student_logp, torch.where(has_tail, student_tail, zero).unsqueeze(-1)], -1)
    return valid, log_p, log_q


def _renormalized(top: _TopK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both distributions conditioned on the candidate set: (valid, log P~, log Q~), [B, T, k]."""
    zero = torch.zeros((), dtype=torch.float32, device=top.valid.device)
    has_any = top.valid.any(dim=-1, keepdim=True)
    teacher_norm = torch.where(has_any, _masked_logsumexp(top.teacher_logp, top.valid).unsqueeze(-1), zero)
    student_norm = torch.where(has_any, _masked_logsumexp(top.student_logits, top.valid).unsqueeze(-1), zero)
    log_p = torch.where(top.valid, top.teacher_logp - teacher_norm, zero)
    log_q = torch.where(top.valid, top.student_logits - student_norm, zero)
    return top.valid, log_p, log_q


def _kl_terms(valid: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """[B, T]: sum over valid buckets of a (log a - log b), with 0 log 0 = 0.

    Written out rather than with F.kl_div, whose argument order is the surprising (log b, a): input is
    the *second* distribution in log space, target the first.
    """
    zero = torch.zeros((), dtype=torch.float32, device=log_a.device)
    prob_a = torch.where(valid, log_a.exp(), zero)
    keep = prob_a > 0
    # Buckets with a = 0 contribute exactly 0. Their logs may be -inf; they are swapped for 0 *before*
    # the product, because 0 * -inf is nan in the forward pass and where() after it would still leak
    # nan into the backward pass. log b = -inf where a > 0 (reverse KL against a teacher with no tail)
    # is clamped to a large finite penalty.
    log_ratio = torch.where(keep, log_a, zero) - torch.where(keep, log_b.clamp(min=_LOG_TINY), zero)
    return (prob_a * log_ratio).sum(-1)


def _reduce(per_position: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over positions that are in the mask and have a candidate; exactly 0 (with grad) if none."""
    keep = mask.bool() & valid.any(dim=-1)
    total = torch.where(keep, per_position, torch.zeros((), device=per_position.device)).sum()
    return total / keep.sum().clamp(min=1)


def topk_forward_kl(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    mode: ForwardMode = "unnormalized",
) -> torch.Tensor:
    """Distribution matching, KL(teacher || student), from the teacher's top-k (module doc for modes).

    student_logits: [B, T, V]; cand_ids: [B, T, k] student ids, -1 pads; cand_logprobs: [B, T, k]
    teacher log-probs, -inf pads; mask: [B, T] bool, positions to train on. Returns a scalar.
    """
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    if mode == "unnormalized":
        per_position = _kl_terms(top.valid, top.teacher_logp, top.student_logp)
    elif mode == "renormalized":
        zero = torch.zeros((), dtype=torch.float32, device=top.valid.device)
        norm = _masked_logsumexp(top.teacher_logp, top.valid).unsqueeze(-1)
        teacher = torch.where(top.valid, top.teacher_logp - torch.where(torch.isfinite(norm), norm, zero), zero)
        per_position = _kl_terms(top.valid, teacher, top.student_logp)
    elif mode == "tail":
        per_position = _kl_terms(*_with_tail(student_logits, cand_ids, top))
    else:
        raise ValueError(f"mode must be 'unnormalized', 'renormalized' or 'tail', got {mode!r}")
    return _reduce(per_position, mask, top.valid)


def _support(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK, support: Support
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if support == "renormalized":
        return _renormalized(top)
    if support == "tail":
        return _with_tail(student_logits, cand_ids, top)
    raise ValueError(f"support must be 'renormalized' or 'tail', got {support!r}")


def topk_reverse_kl(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    support: Support = "renormalized",
) -> torch.Tensor:
    """KL(student || teacher) on a finite support built from the teacher's top-k (module doc).

    Shapes as `topk_forward_kl`. Mode-seeking: the student is pushed off tokens the teacher gives little
    mass. With ``support="tail"``, a teacher that left no tail mass makes the student's tail cost a
    large finite penalty (log 0 is clamped to float32's smallest normal) rather than inf.
    """
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    valid, log_p, log_q = _support(student_logits, cand_ids, top, support)
    return _reduce(_kl_terms(valid, log_q, log_p), mask, top.valid)


def topk_generalized_jsd(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    support: Support = "renormalized",
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence (GKD, Agarwal et al. 2024) on a finite support.

    JSD_beta = beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q: TRL's convention, so
    small beta behaves like forward KL and large beta like reverse KL. 0 < beta < 1 (at the ends it is
    identically 0; use `topk_forward_kl` / `topk_reverse_kl`). Shapes as `topk_forward_kl`.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}; for the endpoints use forward/reverse KL")
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    valid, log_p, log_q = _support(student_logits, cand_ids, top, support)
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
    per_position = beta * _kl_terms(valid, log_p, log_m) + (1.0 - beta) * _kl_terms(valid, log_q, log_m)
    return _reduce(per_position, mask, top.valid)


class DistillLoss(NamedTuple):
    """The training loss and its two parts (for logging)."""

    loss: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor


def distill_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    *,
    kd_weight: float,
    divergence: Divergence = "forward_kl",
    mode: ForwardMode = "unnormalized",
    support: Support = "renormalized",
    beta: float = 0.5,
) -> DistillLoss:
    """(1 - kd_weight) * cross-entropy + kd_weight * divergence to the teacher's top-k.

    student_logits: [B, T, V]; labels: [B, T] with -100 ignored (KD uses the same positions);
    cand_ids / cand_logprobs: [B, T, k] as `topk_forward_kl`. kd_weight in [0, 1]: 0 is pure sample
    matching, 1 pure distribution matching. ``mode`` applies to forward KL, ``support`` to reverse KL
    and JSD, ``beta`` to JSD.
    """
    if not 0.0 <= kd_weight <= 1.0:
        raise ValueError(f"kd_weight must be in [0, 1], got {kd_weight}")
    mask = labels != IGNORE_INDEX
    ce = cross_entropy_loss(student_logits, labels)
    if divergence == "forward_kl":
        kd = topk_forward_kl(student_logits, cand_ids, cand_logprobs, mask, mode=mode)
    elif divergence == "reverse_kl":
        kd = topk_reverse_kl(student_logits, cand_ids, cand_logprobs, mask, support=support)
    elif divergence == "generalized_jsd":
        kd = topk_generalized_jsd(student_logits, cand_ids, cand_logprobs, mask, beta=beta, support=support)
    else:
        raise ValueError(
            f"divergence must be 'forward_kl', 'reverse_kl' or 'generalized_jsd', got {divergence!r}"
        )
    return DistillLoss(loss=(1.0 - kd_weight) * ce + kd_weight * kd, ce=ce, kd=kd)
