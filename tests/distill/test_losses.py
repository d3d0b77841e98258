"""Distillation losses against dense references written the obvious way (float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cotspec.constants import IGNORE_INDEX
from cotspec.distill import (
    cross_entropy_loss,
    distill_loss,
    topk_forward_kl,
    topk_generalized_jsd,
    topk_reverse_kl,
)

B, T, V = 2, 5, 13
FORWARD_MODES = ["unnormalized", "renormalized", "tail"]
SUPPORTS = ["renormalized", "tail"]


def make(seed: int = 0, k: int = V, sharp: float = 2.0):
    """Random student logits, a random dense teacher, and its top-k as candidates (most likely first)."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, T, V, generator=g) * sharp
    teacher = (torch.randn(B, T, V, generator=g) * sharp).log_softmax(-1)
    logprobs, ids = teacher.topk(k, dim=-1)
    return student, teacher, ids, logprobs


def every_loss(student, ids, logprobs, mask, reduction="mean"):
    """Each KD loss variant, by name."""
    r = reduction
    out = {f"forward/{m}": topk_forward_kl(student, ids, logprobs, mask, mode=m, reduction=r) for m in FORWARD_MODES}
    for s in SUPPORTS:
        out[f"reverse/{s}"] = topk_reverse_kl(student, ids, logprobs, mask, support=s, reduction=r)
        out[f"jsd/{s}"] = topk_generalized_jsd(student, ids, logprobs, mask, beta=0.3, support=s, reduction=r)
    return out


def dense_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) per position over the last dim, 0 log 0 = 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def all_positions() -> torch.Tensor:
    return torch.ones(B, T, dtype=torch.bool)


# --- against torch's own KL and dense references ------------------------------------------------------


@pytest.mark.parametrize("mode", FORWARD_MODES)
def test_forward_kl_with_full_vocabulary_equals_kl_div(mode):
    student, teacher, ids, logprobs = make(k=V)
    # F.kl_div(input, target) is KL(target || input) with input already in log space: the surprising order.
    expected = F.kl_div(student.log_softmax(-1), teacher, log_target=True, reduction="none").sum(-1).mean()
    got = topk_forward_kl(student, ids, logprobs, all_positions(), mode=mode)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_candidate_order_and_padding_slots_do_not_matter():
    student, _, ids, logprobs = make(k=6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    slots = torch.tensor([0, 6, 1, 2, 7, 3, 4, 8, 5])  # padding (slots 6-8) interleaved with candidates
    padded_ids = torch.cat([ids[..., perm], torch.full((B, T, 3), -1)], -1)[..., slots]
    padded_lp = torch.cat([logprobs[..., perm], torch.full((B, T, 3), -math.inf)], -1)[..., slots]
    base = every_loss(student, ids, logprobs, all_positions())
    shuffled = every_loss(student, padded_ids, padded_lp, all_positions())
    for name in base:
        torch.testing.assert_close(shuffled[name], base[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("k", [1, 3, V])
def test_topk_forward_kl_matches_dense_reference(k):
    student, teacher, ids, logprobs = make(seed=2, k=k)
    log_q = student.double().log_softmax(-1)
    log_p = teacher.double()
    in_k = torch.zeros(B, T, V, dtype=torch.bool).scatter(-1, ids, True)
    neg_inf = torch.full_like(log_p, -math.inf)
    # unnormalized: the KL sum restricted to the candidates, teacher probabilities as given.
    unnormalized = dense_kl(torch.where(in_k, log_p, neg_inf), log_q)
    # renormalized: KL(P~ || Q) with P~ the teacher truncated to K and renormalized.
    truncated = torch.where(in_k, log_p, neg_inf)
    renormalized = dense_kl(truncated - truncated.logsumexp(-1, keepdim=True), log_q)
    # tail: KL between the (k + 1)-bucket coarsenings.
    def coarsen(log_x):
        inside = torch.where(in_k, log_x, neg_inf)
        outside = torch.where(in_k, neg_inf, log_x).logsumexp(-1, keepdim=True)
        return torch.cat([inside, outside], -1)
    tail = dense_kl(coarsen(log_p), coarsen(log_q))
    expected = {"unnormalized": unnormalized, "renormalized": renormalized, "tail": tail}
    for mode, per_position in expected.items():
        got = topk_forward_kl(student, ids, logprobs, all_positions(), mode=mode)
        torch.testing.assert_close(got.double(), per_position.mean(), rtol=1e-5, atol=1e-6, msg=mode)


@pytest.mark.parametrize("k", [2, V])
def test_reverse_kl_and_jsd_match_dense_references(k):
    student, teacher, ids, logprobs = make(seed=3, k=k)
    in_k = torch.zeros(B, T, V, dtype=torch.bool).scatter(-1, ids, True)
    neg_inf = torch.full((B, T, V), -math.inf, dtype=torch.float64)
    log_q = student.double().log_softmax(-1)
    log_p = teacher.double()

    def on_k(log_x):  # renormalized over K
        inside = torch.where(in_k, log_x, neg_inf)
        return inside - inside.logsumexp(-1, keepdim=True)

    def with_tail(log_x):
        inside = torch.where(in_k, log_x, neg_inf)
        outside = torch.where(in_k, neg_inf, log_x).logsumexp(-1, keepdim=True)
        return torch.cat([inside, outside], -1)

    def jsd(lp, lq, beta):
        log_m = torch.logaddexp(lp + math.log(beta), lq + math.log(1 - beta))
        return beta * dense_kl(lp, log_m) + (1 - beta) * dense_kl(lq, log_m)

    supports = {"renormalized": on_k}
    if k < V:  # at k = V there is no tail bucket
        supports["tail"] = with_tail
    for support, project in supports.items():
        lp, lq = project(log_p), project(log_q)
        got_reverse = topk_reverse_kl(student, ids, logprobs, all_positions(), support=support)
        torch.testing.assert_close(got_reverse.double(), dense_kl(lq, lp).mean(), rtol=1e-5, atol=1e-6)
        got_jsd = topk_generalized_jsd(student, ids, logprobs, all_positions(), beta=0.3, support=support)
        torch.testing.assert_close(got_jsd.double(), jsd(lp, lq, 0.3).mean(), rtol=1e-5, atol=1e-6)
    if k == V:  # the full support: reverse KL is the exact KL(Q || P)
        exact = F.kl_div(teacher, student.log_softmax(-1), log_target=True, reduction="none").sum(-1).mean()
        got = topk_reverse_kl(student, ids, logprobs, all_positions())
        torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-6)


def test_every_divergence_is_zero_when_student_equals_teacher():
    _, teacher, ids, logprobs = make(seed=4, k=V)
    student = teacher.clone() * 1.0 + 3.0  # logits of the same distribution
    for name, loss in every_loss(student, ids, logprobs, all_positions()).items():
        assert abs(loss.item()) < 1e-6, name


def test_tail_is_a_lower_bound_on_the_full_kl_and_unnormalized_can_go_negative():
    for seed in range(5):
        student, teacher, ids, logprobs = make(seed=seed, k=3)
        full = F.kl_div(student.log_softmax(-1), teacher, log_target=True, reduction="none").sum(-1).mean()
        tail = topk_forward_kl(student, ids, logprobs, all_positions(), mode="tail")
        assert 0 <= tail.item() <= full.item() + 1e-6
    # The paper's unnormalized objective is not a divergence: a student more confident than the
    # teacher on the teacher's own top-1 scores below 0.
    student = torch.tensor([[[8.0, 0.0, 0.0]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    below_zero = topk_forward_kl(student, torch.tensor([[[0]]]), torch.tensor([[[math.log(0.5)]]]), one)
    assert below_zero.item() < 0


def test_tail_stays_accurate_when_the_student_is_confident():
    # Student mass outside the candidates is ~1e-13: 1 - sum(q) would be float32 noise.
    student = torch.tensor([[[30.0, 0.0, 0.0, 0.0]]])
    ids = torch.tensor([[[0, 1]]])
    logprobs = torch.tensor([[[math.log(0.9), math.log(0.05)]]])
    got = topk_forward_kl(student, ids, logprobs, torch.ones(1, 1, dtype=torch.bool), mode="tail")
    log_q = student.double().log_softmax(-1)[0, 0]
    p = torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64)
    q_tail = log_q[2:].logsumexp(0)
    expected = (p * (p.log() - torch.stack([log_q[0], log_q[1], q_tail]))).sum()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


# --- masking, padding, dtypes, gradients ------------------------------------------------------------


def test_masked_positions_do_not_affect_loss_or_gradients():
    student, _, ids, logprobs = make(seed=5, k=4)
    mask = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    garbage = student.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), V) * 100  # anything at all at masked positions
    garbage_ids = ids.clone()
    garbage_ids[~mask] = -1
    for (name, clean), (_, noisy) in zip(every_loss(student, ids, logprobs, mask).items(),
                                         every_loss(garbage, garbage_ids, logprobs, mask).items()):  # fmt: skip
        torch.testing.assert_close(noisy, clean, msg=name)
    logits = student.clone().requires_grad_()
    for loss in every_loss(logits, ids, logprobs, mask).values():
        (grad,) = torch.autograd.grad(loss, logits)
        assert (grad[~mask] == 0).all()
        assert (grad[mask] != 0).any()


def test_everything_masked_is_exactly_zero_with_a_gradient():
    student, _, ids, logprobs = make(seed=6, k=4)
    logits = student.clone().requires_grad_()
    nothing = torch.zeros(B, T, dtype=torch.bool)
    losses = every_loss(logits, ids, logprobs, nothing)
    losses["ce"] = cross_entropy_loss(logits, torch.full((B, T), IGNORE_INDEX))
    for name, loss in losses.items():
        assert loss.item() == 0.0 and loss.grad_fn is not None, name
        (grad,) = torch.autograd.grad(loss, logits)
        assert (grad == 0).all(), name
    # A position whose candidates are all padding is not counted either.
    all_padding = every_loss(logits, torch.full_like(ids, -1), torch.full_like(logprobs, -math.inf), all_positions())
    assert all(loss.item() == 0.0 for loss in all_padding.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_are_finite_with_padding_and_low_precision(dtype):
    student, _, ids, logprobs = make(seed=7, k=5, sharp=6.0)
    ids[..., 3:] = -1
    logprobs[..., 3:] = -math.inf
    ids[0, 0] = -1  # a row with no candidate at all
    logprobs[0, 0] = -math.inf
    logits = student.to(dtype).requires_grad_()
    for name, loss in every_loss(logits, ids, logprobs, all_positions()).items():
        (grad,) = torch.autograd.grad(loss, logits)
        assert loss.dtype == torch.float32, name  # computed in float32 whatever the logits
        assert torch.isfinite(loss) and torch.isfinite(grad.float()).all(), name
        assert grad.float().abs().sum() > 0, name


def test_rows_without_candidates_are_left_out_of_the_mean():
    student, _, ids, logprobs = make(seed=11, k=4)
    emptied_ids, emptied_lp = ids.clone(), logprobs.clone()
    emptied_ids[1, 2], emptied_lp[1, 2] = -1, -math.inf
    mask_out = all_positions()
    mask_out[1, 2] = False
    emptied = every_loss(student, emptied_ids, emptied_lp, all_positions())
    for name, loss in every_loss(student, ids, logprobs, mask_out).items():
        torch.testing.assert_close(emptied[name], loss, msg=name)


def test_no_tail_bucket_when_candidates_cover_the_student_vocabulary():
    # After alignment the candidates can cover the whole (small) student vocabulary while the teacher's
    # listed mass is < 1 (the rest was on tokens the student cannot spell): no student tail exists, so
    # the tail mode has nothing to add to the candidate terms.
    student, teacher, ids, logprobs = make(seed=12, k=V)
    short = logprobs + math.log(0.9)
    tail = topk_forward_kl(student, ids, short, all_positions(), mode="tail")
    torch.testing.assert_close(tail, topk_forward_kl(student, ids, short, all_positions(), mode="unnormalized"))


def test_any_leading_shape_works():
    # The trainer hands over only the target positions: [N, V] logits, [N, k] candidates, [N] mask.
    student, _, ids, logprobs = make(seed=13, k=4)
    flat = every_loss(student.reshape(-1, V), ids.reshape(-1, 4), logprobs.reshape(-1, 4), all_positions().reshape(-1))
    for name, loss in every_loss(student, ids, logprobs, all_positions()).items():
        torch.testing.assert_close(flat[name], loss, msg=name)
    labels = ids[..., 0]
    flat_ce = cross_entropy_loss(student.reshape(-1, V), labels.reshape(-1))
    torch.testing.assert_close(flat_ce, cross_entropy_loss(student, labels))


def test_reverse_kl_against_a_teacher_with_no_tail_is_finite():
    # The teacher's listed mass is 1: its tail bucket is empty, the student's is not.
    student = torch.randn(1, 2, 6, requires_grad=True)
    ids = torch.tensor([[[0, 1], [2, 3]]])
    logprobs = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]))
    loss = topk_reverse_kl(student, ids, logprobs, torch.ones(1, 2, dtype=torch.bool), support="tail")
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.isfinite(loss) and loss.item() > 10  # a large penalty, not inf
    assert torch.isfinite(grad).all()


# --- cross-entropy and the mix --------------------------------------------------------------------


def test_cross_entropy_matches_torch_and_ignores_labels():
    student, _, _, _ = make(seed=8)
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    labels[0, :2] = IGNORE_INDEX
    expected = F.cross_entropy(student.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(cross_entropy_loss(student, labels), expected)
    torch.testing.assert_close(cross_entropy_loss(student.bfloat16(), labels), F.cross_entropy(
        student.bfloat16().float().reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX))


def test_one_hot_rows_make_forward_kl_plain_cross_entropy():
    # align_chain writes positions without a teacher as (student token, log-prob 0): KD = CE there.
    student, _, _, _ = make(seed=9)
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    ids = torch.cat([labels.unsqueeze(-1), torch.full((B, T, 2), -1)], -1)
    logprobs = torch.cat([torch.zeros(B, T, 1), torch.full((B, T, 2), -math.inf)], -1)
    for mode in FORWARD_MODES:
        kd = topk_forward_kl(student, ids, logprobs, all_positions(), mode=mode)
        torch.testing.assert_close(kd, cross_entropy_loss(student, labels), msg=mode)


def test_distill_loss_mixes_linearly():
    student, _, ids, logprobs = make(seed=10, k=4)
    labels = ids[..., 0].clone()
    labels[1, 3:] = IGNORE_INDEX
    mask = labels != IGNORE_INDEX
    for divergence, kd_fn in [
        ("forward_kl", lambda: topk_forward_kl(student, ids, logprobs, mask, mode="tail")),
        ("reverse_kl", lambda: topk_reverse_kl(student, ids, logprobs, mask, support="tail")),
        ("generalized_jsd", lambda: topk_generalized_jsd(student, ids, logprobs, mask, beta=0.7, support="tail")),
    ]:
        for weight in (0.0, 0.25, 1.0):
            out = distill_loss(student, labels, ids, logprobs, kd_weight=weight, divergence=divergence,
                               mode="tail", support="tail", beta=0.7)  # fmt: skip
            torch.testing.assert_close(out.kd, kd_fn())
            torch.testing.assert_close(out.ce, cross_entropy_loss(student, labels))
            torch.testing.assert_close(out.loss, (1 - weight) * out.ce + weight * out.kd)


def test_distill_loss_is_cross_entropy_where_the_teacher_top_k_is_unknown():
    # The collator's rows without teacher knowledge are one-hot on the label: forward KL there equals
    # cross-entropy, but reverse KL and JSD on a one-candidate support are 0. `soft` keeps them out.
    student, _, ids, logprobs = make(seed=14, k=3)
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(2))
    labels[0, 0] = IGNORE_INDEX
    soft = torch.tensor([[True, True, False, True, False], [False, True, True, False, True]])
    one_hot_ids = torch.cat([labels.clamp(min=0).unsqueeze(-1), torch.full((B, T, 2), -1)], -1)
    one_hot_lp = torch.cat([torch.zeros(B, T, 1), torch.full((B, T, 2), -math.inf)], -1)
    cand_ids = torch.where(soft.unsqueeze(-1), ids, one_hot_ids)
    cand_logprobs = torch.where(soft.unsqueeze(-1), logprobs, one_hot_lp)
    ce = cross_entropy_loss(student, labels, reduction="none")
    labelled = labels != IGNORE_INDEX
    for divergence, kd_fn in [
        ("forward_kl", topk_forward_kl),
        ("reverse_kl", topk_reverse_kl),
        ("generalized_jsd", topk_generalized_jsd),
    ]:
        kd = kd_fn(student, cand_ids, cand_logprobs, soft, reduction="none")
        out = distill_loss(student, labels, cand_ids, cand_logprobs, kd_weight=0.8, divergence=divergence,
                           soft=soft, reduction="none")  # fmt: skip
        expected = torch.where(soft & labelled, 0.2 * ce + 0.8 * kd, ce)
        torch.testing.assert_close(out.loss, expected, msg=divergence)
        torch.testing.assert_close(out.kd, torch.where(labelled, kd, 0.0), msg=divergence)
        mean = distill_loss(student, labels, cand_ids, cand_logprobs, kd_weight=0.8, divergence=divergence, soft=soft)
        torch.testing.assert_close(mean.loss, expected.sum() / labelled.sum(), msg=divergence)
        torch.testing.assert_close(mean.kd, kd[soft & labelled].mean(), msg=divergence)


def test_reductions_agree():
    """"sum" adds the "none" values, "mean" divides by the positions counted; "none" is 0 elsewhere."""
    student, _, ids, logprobs = make(seed=15, k=4)
    mask = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    labels = ids[..., 0].masked_fill(~mask, IGNORE_INDEX)
    ids[1, 2], logprobs[1, 2] = -1, -math.inf  # masked in, but no candidate: not counted by a divergence
    counted = mask.clone()
    counted[1, 2] = False
    per_position = every_loss(student, ids, logprobs, mask, reduction="none")
    summed = every_loss(student, ids, logprobs, mask, reduction="sum")
    for name, mean in every_loss(student, ids, logprobs, mask).items():
        assert per_position[name].shape == (B, T) and (per_position[name][~counted] == 0).all(), name
        torch.testing.assert_close(summed[name], per_position[name].sum(), msg=name)
        torch.testing.assert_close(mean, summed[name] / counted.sum(), msg=name)
    ce = cross_entropy_loss(student, labels, reduction="none")
    assert (ce[~mask] == 0).all()
    torch.testing.assert_close(cross_entropy_loss(student, labels, reduction="sum"), ce.sum())
    torch.testing.assert_close(cross_entropy_loss(student, labels), ce.sum() / mask.sum())
    for divergence in ("forward_kl", "reverse_kl", "generalized_jsd"):
        parts = {
            r: distill_loss(student, labels, ids, logprobs, kd_weight=0.4, divergence=divergence, reduction=r)
            for r in ("none", "sum", "mean")
        }
        for field in ("loss", "ce", "kd"):
            none, total = getattr(parts["none"], field), getattr(parts["sum"], field)
            torch.testing.assert_close(total, none.sum(), msg=f"{divergence} {field}")
        torch.testing.assert_close(parts["mean"].loss, parts["sum"].loss / mask.sum(), msg=divergence)
        torch.testing.assert_close(parts["mean"].kd, parts["sum"].kd / counted.sum(), msg=divergence)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, i, lp, m: topk_forward_kl(s, i, lp, m, mode="dense"), "mode must be"),
        (lambda s, i, lp, m: topk_reverse_kl(s, i, lp, m, support="full"), "support must be"),
        (lambda s, i, lp, m: topk_generalized_jsd(s, i, lp, m, beta=0.0), "beta must be"),
        (lambda s, i, lp, m: topk_forward_kl(s, i[..., :2], lp, m), "shapes do not fit"),
        (lambda s, i, lp, m: distill_loss(s, i[..., 0], i, lp, kd_weight=1.5), "kd_weight"),
        (lambda s, i, lp, m: distill_loss(s, i[..., 0], i, lp, kd_weight=0.5, divergence="tv"), "divergence"),
        (lambda s, i, lp, m: topk_reverse_kl(s, i, lp, m, reduction="avg"), "reduction must be"),
        (lambda s, i, lp, m: cross_entropy_loss(s, i[..., 0], reduction="batchmean"), "reduction must be"),
    ],
)
def test_bad_arguments_say_what_is_wrong(call, message):
    student, _, ids, logprobs = make(k=3)
    with pytest.raises(ValueError, match=message):
        call(student, ids, logprobs, all_positions())
