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
* A position counts where ``mask`` is true (for cross-entropy: the label is not IGNORE_INDEX) and, for
  a divergence, the row has at least one candidate; other positions never reach the value or its
  gradient. ``reduction`` is what torchtune's KD losses call ``normalize``, spelled as in torch:
  "mean" over the counted positions, "sum" (the trainer divides by the token count of a whole
  optimizer step, over micro-batches and processes), or "none" (per position, 0 where not counted).
  With no counted position "mean" and "sum" are exactly 0 and still have a grad_fn (so a fully padded
  micro-batch steps cleanly under DDP/accelerate).
* `distill_loss` is the training loss (`cotspec train` calls it through `DistillTrainer`): per token,
  the kd_weight mix of cross-entropy and one divergence where the teacher's top-k is known,
  cross-entropy elsewhere.

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

from ..constants import IGNORE_INDEX

ForwardMode = Literal["unnormalized", "renormalized", "tail"]
Support = Literal["renormalized", "tail"]
Divergence = Literal["forward_kl", "reverse_kl", "generalized_jsd"]
Reduction = Literal["mean", "sum", "none"]

# log of float32's smallest normal: where a bucket's probability is 0 but its log is needed (reverse KL
# against a teacher that left no tail), a large finite penalty instead of inf.
_LOG_TINY = math.log(torch.finfo(torch.float32).tiny)


def _reduce(per_position: torch.Tensor, counted: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Reduce per-position values [...] over the positions where `counted` [...] is true.

    Positions not counted are replaced by 0 *before* anything is added, so whatever they hold (they are
    finite here, but meaningless) never reaches the result or its gradient.
    """
    kept = torch.where(counted, per_position, torch.zeros((), dtype=per_position.dtype, device=per_position.device))
    if reduction == "none":
        return kept
    total = kept.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        # Not a plain .mean(): with nothing counted it must be 0 (not 0/0 = nan) and keep its grad_fn.
        return total / counted.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _cross_entropy_terms(
    logits: torch.Tensor, log_normalizer: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """[...]: -log q(label) = logsumexp(z) - z_label per position, 0 where the label is ignored.

    logits: [..., V] float32; log_normalizer: [...] their logsumexp (shared with the top-k gather when
    both losses run, so the [..., V] reduction happens once).
    """
    labelled = labels != ignore_index
    # Ignored labels (-100) would index out of range: gather id 0 there, then drop it.
    picked = logits.gather(-1, labels.masked_fill(~labelled, 0).long().unsqueeze(-1)).squeeze(-1)
    return torch.where(labelled, log_normalizer - picked, torch.zeros((), device=logits.device))


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Sample matching: token cross-entropy, -log q(label).

    logits: [B, T, V], any float dtype (computed in float32).
    labels: [B, T] student token ids, ``ignore_index`` where excluded.
    reduction: "mean" over the labels not ignored (0, with grad, when all are), "sum", or "none" ([B, T],
    0 where ignored).
    """
    logits = logits.float()
    terms = _cross_entropy_terms(logits, torch.logsumexp(logits, dim=-1), labels, ignore_index)
    return _reduce(terms, labels != ignore_index, reduction)


class _TopK(NamedTuple):
    """Teacher and student on the teacher's candidates, float32, all [B, T, k]."""

    valid: torch.Tensor  # bool: a real candidate (not padding)
    teacher_logp: torch.Tensor  # log p_v; 0 where not valid (finite, so 0 * it stays 0)
    student_logp: torch.Tensor  # log q_v over the full vocabulary; 0 where not valid
    student_logits: torch.Tensor  # z_v; 0 where not valid
    student_logz: torch.Tensor  # [B, T] logsumexp of the student's logits

    @property
    def has_candidate(self) -> torch.Tensor:
        """[B, T] bool: the position has at least one real candidate (else no divergence is defined)."""
        return self.valid.any(dim=-1)


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
    valid = (cand_ids >= 0) & torch.isfinite(teacher)  # PAD_ID (-1) slots and -inf log-probs are no candidates
    logz = torch.logsumexp(logits, dim=-1)
    # Padding gathers id 0, then is zeroed: every tensor below is finite, so no nan reaches a grad.
    z = logits.gather(-1, cand_ids.masked_fill(~valid, 0).long())
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


def _forward_kl_terms(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK, mode: ForwardMode
) -> torch.Tensor:
    """[B, T] forward KL per position in one of the three top-k modes (module doc)."""
    if mode == "unnormalized":
        return _kl_terms(top.valid, top.teacher_logp, top.student_logp)
    if mode == "renormalized":
        zero = torch.zeros((), dtype=torch.float32, device=top.valid.device)
        norm = _masked_logsumexp(top.teacher_logp, top.valid).unsqueeze(-1)
        teacher = torch.where(top.valid, top.teacher_logp - torch.where(torch.isfinite(norm), norm, zero), zero)
        return _kl_terms(top.valid, teacher, top.student_logp)
    if mode == "tail":
        return _kl_terms(*_with_tail(student_logits, cand_ids, top))
    raise ValueError(f"mode must be 'unnormalized', 'renormalized' or 'tail', got {mode!r}")


def _support(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK, support: Support
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if support == "renormalized":
        return _renormalized(top)
    if support == "tail":
        return _with_tail(student_logits, cand_ids, top)
    raise ValueError(f"support must be 'renormalized' or 'tail', got {support!r}")


def _reverse_kl_terms(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK, support: Support
) -> torch.Tensor:
    """[B, T] KL(student || teacher) per position on the chosen finite support."""
    valid, log_p, log_q = _support(student_logits, cand_ids, top, support)
    return _kl_terms(valid, log_q, log_p)


def _check_beta(beta: float) -> None:
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}; for the endpoints use forward/reverse KL")


def _jsd_terms(
    student_logits: torch.Tensor, cand_ids: torch.Tensor, top: _TopK, beta: float, support: Support
) -> torch.Tensor:
    """[B, T] generalized JSD per position on the chosen finite support."""
    valid, log_p, log_q = _support(student_logits, cand_ids, top, support)
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
    return beta * _kl_terms(valid, log_p, log_m) + (1.0 - beta) * _kl_terms(valid, log_q, log_m)


def topk_forward_kl(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    mode: ForwardMode = "unnormalized",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Distribution matching, KL(teacher || student), from the teacher's top-k (module doc for modes).

    student_logits: [B, T, V]; cand_ids: [B, T, k] student ids, -1 pads; cand_logprobs: [B, T, k]
    teacher log-probs, -inf pads; mask: [B, T] bool, positions to train on.
    reduction: "mean" / "sum" over the positions in `mask` that have a candidate (a scalar), or "none"
    ([B, T], 0 elsewhere).
    """
    student_logits = student_logits.float()  # one float32 copy, which every helper below reuses
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    per_position = _forward_kl_terms(student_logits, cand_ids, top, mode)
    return _reduce(per_position, mask.bool() & top.has_candidate, reduction)


def topk_reverse_kl(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    support: Support = "renormalized",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """KL(student || teacher) on a finite support built from the teacher's top-k (module doc).

    Shapes and reduction as `topk_forward_kl`. Mode-seeking: the student is pushed off tokens the
    teacher gives little mass. With ``support="tail"``, a teacher that left no tail mass makes the
    student's tail cost a large finite penalty (log 0 is clamped to float32's smallest normal) rather
    than inf.
    """
    student_logits = student_logits.float()  # one float32 copy, which every helper below reuses
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    per_position = _reverse_kl_terms(student_logits, cand_ids, top, support)
    return _reduce(per_position, mask.bool() & top.has_candidate, reduction)


def topk_generalized_jsd(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    support: Support = "renormalized",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence (GKD, Agarwal et al. 2024) on a finite support.

    JSD_beta = beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q: TRL's convention, so
    small beta behaves like forward KL and large beta like reverse KL. 0 < beta < 1 (at the ends it is
    identically 0; use `topk_forward_kl` / `topk_reverse_kl`). Shapes and reduction as
    `topk_forward_kl`.
    """
    _check_beta(beta)
    student_logits = student_logits.float()  # one float32 copy, which every helper below reuses
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    per_position = _jsd_terms(student_logits, cand_ids, top, beta, support)
    return _reduce(per_position, mask.bool() & top.has_candidate, reduction)


class DistillLoss(NamedTuple):
    """The training loss and its two parts (for logging), each reduced as asked."""

    loss: torch.Tensor
    """Per token: the mix on positions with teacher top-k, cross-entropy on the other labelled ones."""
    ce: torch.Tensor
    """Cross-entropy over every labelled position."""
    kd: torch.Tensor
    """The divergence over the positions with teacher top-k only."""


def _divergence_terms(
    student_logits: torch.Tensor,
    cand_ids: torch.Tensor,
    top: _TopK,
    divergence: Divergence,
    mode: ForwardMode,
    support: Support,
    beta: float,
) -> torch.Tensor:
    if divergence == "forward_kl":
        return _forward_kl_terms(student_logits, cand_ids, top, mode)
    if divergence == "reverse_kl":
        return _reverse_kl_terms(student_logits, cand_ids, top, support)
    if divergence == "generalized_jsd":
        _check_beta(beta)
        return _jsd_terms(student_logits, cand_ids, top, beta, support)
    raise ValueError(f"divergence must be 'forward_kl', 'reverse_kl' or 'generalized_jsd', got {divergence!r}")


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
    soft: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> DistillLoss:
    """The training loss: per labelled token, (1 - kd_weight) * cross-entropy + kd_weight * divergence
    to the teacher's top-k where the teacher's top-k is known, cross-entropy alone everywhere else.

    student_logits: [B, T, V]; labels: [B, T], IGNORE_INDEX (-100) where nothing is learnt;
    cand_ids / cand_logprobs: [B, T, k] as `topk_forward_kl`.
    soft: [B, T] bool, the positions that hold the teacher's top-k (the collator's ``soft``); the
        candidates at other positions are not read (the collator's one-hot rows there would make forward
        KL equal cross-entropy, but reverse KL and JSD 0). Default: every labelled position with a
        candidate.
    kd_weight in [0, 1]: 0 is pure sample matching, 1 pure distribution matching on soft tokens.
    ``mode`` applies to forward KL, ``support`` to reverse KL and JSD, ``beta`` to JSD.
    reduction: "mean" over the labelled tokens (for ``kd``: over the soft ones), "sum" (what the trainer
        uses: it divides by the token count of a whole optimizer step, see `cotspec.distill.trainer`), or
        "none" ([B, T] per token, 0 where not counted).
    """
    if not 0.0 <= kd_weight <= 1.0:
        raise ValueError(f"kd_weight must be in [0, 1], got {kd_weight}")
    labelled = labels != IGNORE_INDEX
    student_logits = student_logits.float()  # one float32 copy, which every helper below reuses
    top = _gather_topk(student_logits, cand_ids, cand_logprobs)
    taught = labelled & top.has_candidate & (soft.bool() if soft is not None else True)
    # One logsumexp over the vocabulary serves both terms.
    ce = _cross_entropy_terms(student_logits, top.student_logz, labels, IGNORE_INDEX)
    kd = _divergence_terms(student_logits, cand_ids, top, divergence, mode, support, beta)
    mixed = torch.where(taught, (1.0 - kd_weight) * ce + kd_weight * kd, ce)
    return DistillLoss(
        loss=_reduce(mixed, labelled, reduction),
        ce=_reduce(ce, labelled, reduction),
        kd=_reduce(kd, taught, reduction),
    )
