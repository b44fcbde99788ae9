"""Loss functions of the GNN cross-modal models, each a small pure function.

Masks (bool, one per row) mark which rows of a batch carry a modality; terms skip absent
rows, and a term with nothing left to average is 0 (not NaN). Without masks every function
computes what the authors' release (LivXue/GNN4CMR) computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """sum_i m_i x_i / max(1, sum_i m_i) (the plain mean without a mask; 0, not NaN, for an empty mask)."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def cosine_prediction(feat: torch.Tensor, classifiers: torch.Tensor) -> torch.Tensor:
    """p_ic = <f_i, C_c> / (||f_i|| ||C_c|| + 1e-6): (n, D) x (c, D) -> (n, c) (the release's epsilon)."""
    norms = feat.norm(dim=1)[:, None] * classifiers.norm(dim=1)[None, :]
    return (feat @ classifiers.T) / (norms + 1e-6)


def classification_loss(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """L_cla = mean_i ||p_i - y_i||_2 (the norm, not its square) over rows in `mask`."""
    return _masked_mean((pred - labels).norm(dim=1), mask)


def label_similarity(ya: torch.Tensor, yb: torch.Tensor, kind: str = "jaccard") -> torch.Tensor:
    """s_ij between multi-hot rows: jaccard |a∧b|/|a∨b|, cosine |a∧b|/sqrt(|a||b|), or binary [|a∧b| > 0]."""
    ya = ya if ya.is_floating_point() else ya.float()
    yb = yb.to(ya.dtype)
    inter = ya @ yb.T
    if kind == "binary":
        return (inter > 0).to(ya.dtype)
    na, nb = ya.sum(1)[:, None], yb.sum(1)[None, :]
    if kind == "jaccard":
        return inter / (na + nb - inter).clamp_min(1e-12)
    if kind == "cosine":
        return inter / (na * nb).sqrt().clamp_min(1e-12)
    raise ValueError(f"label similarity must be jaccard, cosine or binary, got {kind!r}")


def soft_contrastive(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, tau: float, lse_scale: float = 1.0,
                     exclude_self: bool = False, row_mask: torch.Tensor | None = None,
                     col_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One direction of the multi-label contrastive loss, anchors a_i against candidates b_j.

    sim_ij = <â_i, b̂_j> / tau on L2-normalised rows; P_ij = s_ij / sum_j s_ij;
    loss = mean_i - sum_j P_ij (sim_ij - log sum_j' exp(lse_scale * sim_ij')).
    lse_scale = 1 is the exact InfoNCE-style -sum P log softmax; the released code uses 1.06.
    `exclude_self` removes j = i from the POSITIVES only (P_ii = 0, renormalised); j = i stays
    in the log-sum-exp denominator (intra-modal terms, as released). The mean runs over all
    anchors (those in `row_mask` when given): an anchor without any positive adds 0. Candidates
    outside `col_mask` are neither positives nor in the denominator.
    """
    sim = F.normalize(a, dim=1, eps=1e-12) @ F.normalize(b, dim=1, eps=1e-12).T / tau
    valid = torch.ones_like(sim, dtype=torch.bool)
    if col_mask is not None:
        valid &= col_mask[None, :]
    positive = valid
    if exclude_self:
        positive = positive & ~torch.eye(*sim.shape, dtype=torch.bool, device=sim.device)
    if row_mask is not None:
        positive = positive & row_mask[:, None]
    s = s * positive
    mass = s.sum(1, keepdim=True)
    # excluded candidates get the most negative finite logit: exp of it is exactly 0 next to any valid
    # one, and an anchor without candidates keeps a finite log-sum-exp (so no NaN gradient and no
    # host-side check of the masks is needed); its weights p are 0, so it adds 0
    floor = torch.finfo(sim.dtype).min
    log_denom = torch.logsumexp((lse_scale * sim).masked_fill(~valid, floor), dim=1, keepdim=True)
    log_p = (sim - log_denom).masked_fill(~valid, 0.0)
    p = s / mass.clamp_min(1e-12)
    per_anchor = -(p * log_p).sum(1)
    return _masked_mean(per_anchor, row_mask)


def multilabel_contrastive(u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, tau: float, gamma: float,
                           similarity: str = "jaccard", lse_scale: float = 1.0,
                           image_mask: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """L_con = l(u->v) + l(v->u) + gamma (l(u->u) + l(v->v)), intra-modal terms without j = i
    among their positives (j = i stays in their denominators).

    Every term uses the same label similarity s = label_similarity(y, y, similarity) (soft
    positives for jaccard / cosine, uniform over positives for binary). Cross-modal terms take
    anchors where the anchor's modality is present and candidates where the other one is.
    """
    s = label_similarity(y, y, similarity)
    if image_mask is None and text_mask is None:
        z = F.normalize(torch.cat([u, v]), dim=1, eps=1e-12)
        return fused_contrastive(z, s, tau, gamma, lse_scale)
    l_it = soft_contrastive(u, v, s, tau, lse_scale, row_mask=image_mask, col_mask=text_mask)
    l_ti = soft_contrastive(v, u, s, tau, lse_scale, row_mask=text_mask, col_mask=image_mask)
    l_ii = soft_contrastive(u, u, s, tau, lse_scale, True, image_mask, image_mask)
    l_tt = soft_contrastive(v, v, s, tau, lse_scale, True, text_mask, text_mask)
    return l_it + l_ti + gamma * (l_ii + l_tt)


def fused_contrastive(z: torch.Tensor, s: torch.Tensor, tau: float, gamma: float, lse_scale: float = 1.0
                      ) -> torch.Tensor:
    """`multilabel_contrastive` without masks from ONE similarity matrix (fewer kernels, same value).

    z = the L2-normalised rows [u; v] (2n, D), s the (n, n) label similarity (symmetric).
    sim = z z^T / tau holds the four blocks uu, uv, vu, vv; viewed as (2, n, 2, n) each anchor
    row gets its log-sum-exp per block, and the weights W are P_inter = s / rowsum(s) on the
    cross-modal blocks and gamma P_intra (s without its diagonal, renormalised) on the intra-modal
    ones, so L_con = -(1/n) sum W (sim - log_denom) = l(u->v) + l(v->u) + gamma (l(u->u) + l(v->v)).
    """
    n = s.shape[0]
    sim = (z @ z.T / tau).view(2, n, 2, n)
    log_denom = torch.logsumexp(lse_scale * sim, dim=3, keepdim=True)
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    s_intra = s.masked_fill(eye, 0.0)
    p_inter = s / s.sum(1, keepdim=True).clamp_min(1e-12)
    p_intra = (gamma * s_intra) / s_intra.sum(1, keepdim=True).clamp_min(1e-12)
    same = torch.eye(2, dtype=torch.bool, device=s.device).view(2, 1, 2, 1)
    w = torch.where(same, p_intra.view(1, n, 1, n), p_inter.view(1, n, 1, n))
    return -(w * (sim - log_denom)).sum() / n


def pairwise_nll(a: torch.Tensor, b: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor,
                 row_mask: torch.Tensor | None = None, col_mask: torch.Tensor | None = None) -> torch.Tensor:
    """DSCMR pairwise loss as released: mean_ij log(1 + e^theta_ij) - S_ij theta_ij over valid pairs.

    theta_ij = <a_i, b_j> / max(||a_i|| ||b_j||, 1e-6) / 2 (the 1e-6 clamps the PRODUCT of the
    norms) and S_ij = y_a,i . y_b,j, the NUMBER of labels the two items share (not a 0/1
    overlap; the two agree only on single-label data). i = j is included.
    """
    norms = a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :]
    theta = 0.5 * (a @ b.T) / norms.clamp_min(1e-6)
    s = ya.to(theta.dtype) @ yb.to(theta.dtype).T
    loss = F.softplus(theta) - s * theta
    if row_mask is None and col_mask is None:
        return loss.mean()
    ones_a = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
    ones_b = torch.ones(b.shape[0], dtype=torch.bool, device=b.device)
    pair = (ones_a if row_mask is None else row_mask)[:, None] & (ones_b if col_mask is None else col_mask)[None, :]
    return _masked_mean(loss, pair)


def dscmr_nll(u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, image_mask: torch.Tensor | None = None,
              text_mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_nll = pairwise_nll(u, u) + pairwise_nll(u, v) + pairwise_nll(v, v) (DAGNN / DSCMR).

    Without masks the three blocks come from one (2n, 2n) matrix of [u; v] (same value, fewer kernels).
    """
    if image_mask is None and text_mask is None:
        n = u.shape[0]
        z = torch.cat([u, v])
        norms = z.norm(dim=1)
        theta = (0.5 * (z @ z.T) / (norms[:, None] * norms[None, :]).clamp_min(1e-6)).view(2, n, 2, n)
        s = (y.to(theta.dtype) @ y.to(theta.dtype).T).view(1, n, 1, n)
        blocks = torch.ones(2, 2, dtype=theta.dtype, device=theta.device).triu().view(2, 1, 2, 1)  # uu, uv, vv
        return ((F.softplus(theta) - s * theta) * blocks).sum() / (n * n)
    return (pairwise_nll(u, u, y, y, image_mask, image_mask) + pairwise_nll(u, v, y, y, image_mask, text_mask)
            + pairwise_nll(v, v, y, y, text_mask, text_mask))


def adversarial_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, real_mask: torch.Tensor | None = None,
                     fake_mask: torch.Tensor | None = None, real_class: int = 1) -> torch.Tensor:
    """One discriminator's term: CE(D(real), real_class) + CE(D(generated), 1 - real_class),
    each averaged over its rows.

    The discriminator begins with gradient reversal, so minimising this trains the
    discriminator to separate and, through the reversed gradient, the generator to confuse.
    Which output unit means "real" is arbitrary; the release labels by modality (image 1,
    text 0), i.e. real_class = 1 for the image discriminator and 0 for the text one.
    """
    real = torch.full((logits_real.shape[0],), real_class, dtype=torch.long, device=logits_real.device)
    fake = torch.full((logits_fake.shape[0],), 1 - real_class, dtype=torch.long, device=logits_fake.device)
    return (_masked_mean(F.cross_entropy(logits_real, real, reduction="none"), real_mask)
            + _masked_mean(F.cross_entropy(logits_fake, fake, reduction="none"), fake_mask))
