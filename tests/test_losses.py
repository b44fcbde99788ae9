"""The loss functions of the GNN models match hand-computed values and naive references."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import builtin_plugin

losses = builtin_plugin("methods.common.losses")

E = math.e


def test_classification_loss_is_mean_l2_norm_of_cosine_prediction_error():
    # C rows normalise to e1, e2. u0 = (1,0): p0 = (1, 0); u1 = (1,1): p1 = (1/√2, 1/√2).
    # y0 = (1,1): ||(0,-1)|| = 1.  y1 = (0,1): ||(0.7071, -0.2929)|| = sqrt(0.5 + 0.0858) = 0.76537.
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    c = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    p = losses.cosine_prediction(u, c)
    assert torch.allclose(p, torch.tensor([[1.0, 0.0], [0.5 ** 0.5, 0.5 ** 0.5]]))
    r = 1 - 0.5 ** 0.5
    assert losses.classification_loss(p, y).item() == pytest.approx((1 + math.sqrt(0.5 + r * r)) / 2, rel=1e-6)
    assert losses.classification_loss(p, y, torch.tensor([True, False])).item() == pytest.approx(1.0)


def test_label_similarity_jaccard_cosine_binary_by_hand():
    # y0 = {0}, y1 = {0,1}: |∩| = 1, |∪| = 2 -> jaccard 1/2, cosine 1/sqrt(1*2), binary 1.
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert losses.label_similarity(y, y, "jaccard")[0, 1].item() == pytest.approx(0.5)
    assert losses.label_similarity(y, y, "cosine")[0, 1].item() == pytest.approx(2 ** -0.5)
    assert losses.label_similarity(y, y, "binary")[0, 1].item() == 1.0


def test_soft_contrastive_matches_hand_value():
    # a = b = I (2 items), tau = 1 -> sim = I. y0 = {0}, y1 = {0,1}: jaccard s = [[1, .5], [.5, 1]],
    # P row0 = (2/3, 1/3). Denominator log(e^1 + e^0) = log(1+e) =: Lz.
    # loss0 = -(2/3 (1 - Lz) + 1/3 (0 - Lz)) = Lz - 2/3; row 1 is symmetric -> mean Lz - 2/3.
    a = torch.eye(2)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    s = losses.label_similarity(y, y, "jaccard")
    assert losses.soft_contrastive(a, a, s, tau=1.0).item() == pytest.approx(math.log(1 + E) - 2 / 3, rel=1e-6)
    # binary positives: P = (1/2, 1/2) -> Lz - 1/2
    sb = losses.label_similarity(y, y, "binary")
    assert losses.soft_contrastive(a, a, sb, tau=1.0).item() == pytest.approx(math.log(1 + E) - 0.5, rel=1e-6)
    # tau = 0.5: sim = 2 I -> log(1 + e^2) - 2 * 2/3
    assert losses.soft_contrastive(a, a, s, tau=0.5).item() == pytest.approx(math.log(1 + E ** 2) - 4 / 3, rel=1e-6)
    # lse_scale 1.06 enters the denominator only: log(e^1.06 + 1) - 2/3
    assert losses.soft_contrastive(a, a, s, tau=1.0, lse_scale=1.06).item() == pytest.approx(
        math.log(1 + E ** 1.06) - 2 / 3, rel=1e-6)


def test_soft_contrastive_exclude_self_keeps_self_in_denominator_and_averages_over_all_rows():
    # items: a0 = e1, a1 = e2, a2 = e1; y = {0}, {1}, {0}; tau = 1 -> sims row 0 = (1, 0, 1).
    # Intra-modal (exclude_self): j = i leaves the POSITIVES only, the denominator keeps it:
    # anchor 0: positive {2} (P = 1), denominator log(e + 1 + e): loss log(2e + 1) - 1;
    # anchor 1: no positive left -> adds 0, still counted in the mean; anchor 2 = anchor 0.
    # Mean over all 3 rows: 2 (log(2e + 1) - 1) / 3.
    # (Dropping j = i from the denominator and skipping anchor 1 would give log(1 + e) - 1.)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    s = losses.label_similarity(y, y)
    expect = 2 * (math.log(2 * E + 1) - 1) / 3
    assert losses.soft_contrastive(a, a, s, 1.0, exclude_self=True).item() == pytest.approx(expect, rel=1e-12)
    with_self = losses.soft_contrastive(a, a, s, 1.0)
    # anchors 0 and 2: P = (1/2, 0, 1/2), log(2e+1) - 1; anchor 1: only itself, sims (0, 1, 0): log(2 + e) - 1
    expect = (2 * (math.log(2 * E + 1) - 1) + math.log(2 + E) - 1) / 3
    assert with_self.item() == pytest.approx(expect, rel=1e-12)


def test_soft_contrastive_rows_without_positives_count_as_zero_in_cross_terms():
    # a row with no label has no positive in a cross-modal term either: it adds 0 to a mean
    # over all rows. a = b = I (2 items), y0 = {0}, y1 = {}: row 0 loss log(1 + e) - 1, row 1: 0.
    a = torch.eye(2, dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    s = losses.label_similarity(y, y, "binary")
    assert losses.soft_contrastive(a, a, s, 1.0).item() == pytest.approx((math.log(1 + E) - 1) / 2, rel=1e-12)


def test_soft_contrastive_masks_skip_absent_rows_and_columns():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    y = (torch.rand(5, 3) < 0.5).float()
    y[:, 0] = 1
    s = losses.label_similarity(y, y)
    rows = torch.tensor([True, True, False, True, True])
    cols = torch.tensor([True, False, True, True, True])
    keep_r, keep_c = rows.nonzero().squeeze(1), cols.nonzero().squeeze(1)
    expect = losses.soft_contrastive(a[keep_r], b[keep_c], s[keep_r][:, keep_c], 0.3, 1.06)
    got = losses.soft_contrastive(a, b, s, 0.3, 1.06, row_mask=rows, col_mask=cols)
    assert got.item() == pytest.approx(expect.item(), rel=1e-5)


def _contrastive_both(y):
    torch.manual_seed(1)
    u, v = torch.randn(len(y), 8), torch.randn(len(y), 8)
    soft = losses.multilabel_contrastive(u, v, y, tau=0.2, gamma=0.14, similarity="jaccard", lse_scale=1.06)
    binary = losses.multilabel_contrastive(u, v, y, tau=0.2, gamma=0.14, similarity="binary", lse_scale=1.06)
    return soft.item(), binary.item()


def test_soft_and_binary_contrastive_agree_when_overlaps_are_all_or_nothing():
    protos = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    y = protos[torch.tensor([0, 1, 2, 0, 1, 0, 2, 2])]  # label sets identical or disjoint
    soft, binary = _contrastive_both(y)
    assert soft == pytest.approx(binary, rel=1e-6)


def test_soft_and_binary_contrastive_differ_with_partial_overlaps():
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0],
                      [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    soft, binary = _contrastive_both(y)
    assert abs(soft - binary) > 1e-3


def test_multilabel_contrastive_is_cross_terms_plus_gamma_intra_terms():
    torch.manual_seed(2)
    u, v = torch.randn(6, 5), torch.randn(6, 5)
    y = (torch.rand(6, 4) < 0.5).float()
    y[:, 1] = 1
    s = losses.label_similarity(y, y)
    parts = [losses.soft_contrastive(u, v, s, 0.3, 1.06), losses.soft_contrastive(v, u, s, 0.3, 1.06),
             losses.soft_contrastive(u, u, s, 0.3, 1.06, exclude_self=True),
             losses.soft_contrastive(v, v, s, 0.3, 1.06, exclude_self=True)]
    got = losses.multilabel_contrastive(u, v, y, 0.3, 0.5, "jaccard", 1.06)
    assert got.item() == pytest.approx((parts[0] + parts[1] + 0.5 * (parts[2] + parts[3])).item(), rel=1e-6)


def _naive_nll(a, b, ya, yb, rows=None, cols=None):
    total, count = 0.0, 0
    for i in range(len(a)):
        for j in range(len(b)):
            if (rows is not None and not rows[i]) or (cols is not None and not cols[j]):
                continue
            cos = float(a[i] @ b[j] / max(float(a[i].norm() * b[j].norm()), 1e-6))
            theta = cos / 2
            share = float((ya[i] * yb[j]).sum())  # number of shared labels
            total += math.log(1 + math.exp(theta)) - share * theta
            count += 1
    return total / count


def test_pairwise_nll_matches_naive_loop():
    torch.manual_seed(3)
    a, b = torch.randn(7, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    ya, yb = (torch.rand(7, 3) < 0.4).double(), (torch.rand(5, 3) < 0.4).double()
    assert losses.pairwise_nll(a, b, ya, yb).item() == pytest.approx(_naive_nll(a, b, ya, yb), rel=1e-9)
    rows = torch.tensor([True, False, True, True, False, True, True])
    cols = torch.tensor([False, True, True, True, True])
    assert losses.pairwise_nll(a, b, ya, yb, rows, cols).item() == pytest.approx(
        _naive_nll(a, b, ya, yb, rows, cols), rel=1e-9)


def test_pairwise_nll_counts_shared_labels_3x2_by_hand():
    # a = b = rows e1, e2, (1,1): cos = [[1, 0, r2], [0, 1, r2], [r2, r2, 1]] with r2 = 1/sqrt(2),
    # theta = cos / 2, so theta = 1/2 on the diagonal, 0 at (0,1)/(1,0), r = 1/(2 sqrt 2) elsewhere.
    # y0 = {0,1}, y1 = {0}, y2 = {1}: S = y y^T = [[2, 1, 1], [1, 1, 0], [1, 0, 1]] (counts).
    # sum softplus = 3 log(1 + e^.5) + 2 log 2 + 4 log(1 + e^r); sum S theta = (2+1+1)/2 + 2 r.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    r = 1 / (2 * math.sqrt(2))
    softplus = 3 * math.log(1 + math.exp(0.5)) + 2 * math.log(2) + 4 * math.log(1 + math.exp(r))
    expect = (softplus - (2.0 + 2 * r)) / 9
    assert losses.pairwise_nll(a, a, y, y).item() == pytest.approx(expect, rel=1e-12)
    # (a binarised S would give S00 = 1 instead of 2: 0.5/9 = 0.056 more)
    # dscmr_nll with u = v sums three identical terms
    assert losses.dscmr_nll(a, a, y).item() == pytest.approx(3 * expect, rel=1e-12)


def test_pairwise_nll_clamps_product_of_norms_at_1e6():
    # ||a|| = 1e-4, ||b|| = 1e-3: product 1e-7 < 1e-6, so theta = (1e-7 / 1e-6) / 2 = 0.05
    # (not cos / 2 = 0.5). One shared label: loss = log(1 + e^.05) - .05.
    a = torch.tensor([[1e-4, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1e-3, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0]], dtype=torch.float64)
    assert losses.pairwise_nll(a, b, y, y).item() == pytest.approx(math.log(1 + math.exp(0.05)) - 0.05, rel=1e-12)
    # a zero row gives theta = 0: log 2
    z = torch.zeros(1, 2, dtype=torch.float64)
    assert losses.pairwise_nll(z, b, y, y).item() == pytest.approx(math.log(2), rel=1e-12)


def test_dscmr_nll_sums_image_image_image_text_text_text():
    torch.manual_seed(4)
    u, v = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    y = (torch.rand(4, 2) < 0.5).double()
    expect = _naive_nll(u, u, y, y) + _naive_nll(u, v, y, y) + _naive_nll(v, v, y, y)
    assert losses.dscmr_nll(u, v, y).item() == pytest.approx(expect, rel=1e-9)


def test_adversarial_loss_by_hand():
    # real logits (0, 0): CE vs class 1 = log 2; fake logits (0, log 3): P(class 0) = 1/4 -> log 4.
    real = torch.tensor([[0.0, 0.0]])
    fake = torch.tensor([[0.0, math.log(3.0)]])
    assert losses.adversarial_loss(real, fake).item() == pytest.approx(math.log(8.0), rel=1e-6)


def test_losses_with_nothing_present_are_zero_not_nan():
    u, v = torch.randn(3, 4), torch.randn(3, 4)
    y = torch.ones(3, 2)
    none = torch.zeros(3, dtype=torch.bool)
    assert losses.multilabel_contrastive(u, v, y, 0.2, 0.1, image_mask=none, text_mask=none).item() == 0.0
    assert losses.classification_loss(torch.zeros(3, 2), y, none).item() == 0.0


def test_fused_contrastive_and_nll_match_the_per_term_sums_in_value_and_gradient_float64():
    torch.manual_seed(7)
    y = (torch.rand(7, 4) < 0.4).double()
    y[:3, 2] = 1
    y[6] = 0  # a row without labels: no positives anywhere
    u0, v0 = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)

    def grads(fn):
        u, v = u0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
        out = fn(u, v)
        out.backward()
        return out.detach(), u.grad, v.grad

    s = losses.label_similarity(y, y)

    def per_term(u, v):
        return (losses.soft_contrastive(u, v, s, 0.3, 1.06) + losses.soft_contrastive(v, u, s, 0.3, 1.06)
                + 0.4 * (losses.soft_contrastive(u, u, s, 0.3, 1.06, exclude_self=True)
                         + losses.soft_contrastive(v, v, s, 0.3, 1.06, exclude_self=True)))

    fused = grads(lambda u, v: losses.multilabel_contrastive(u, v, y, 0.3, 0.4, "jaccard", 1.06))
    for a, b in zip(fused, grads(per_term)):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)
    fused = grads(lambda u, v: losses.dscmr_nll(u, v, y))
    ones = torch.ones(7, dtype=torch.bool)  # masks given: the per-block path
    for a, b in zip(fused, grads(lambda u, v: losses.dscmr_nll(u, v, y, ones, ones))):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


def test_contrastive_without_candidates_has_a_finite_zero_gradient():
    u = torch.randn(3, 4, requires_grad=True)
    v = torch.randn(3, 4, requires_grad=True)
    none = torch.zeros(3, dtype=torch.bool)
    loss = losses.multilabel_contrastive(u, v, torch.ones(3, 2), 0.2, 0.1, image_mask=none, text_mask=none)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(u.grad, torch.zeros_like(u)) and torch.equal(v.grad, torch.zeros_like(v))
