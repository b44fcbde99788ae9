"""Loss pieces of the deep baselines (ACMR, DSCMR, ALGCN), each a small pure function.

Written from the papers and the maths of each authors' release. Conventions as in `losses.py`:
optional bool masks (one per row) mark which rows carry a modality; terms skip absent rows,
and a term with nothing left to average is 0 (not NaN). With no masks every function is the
release's formula exactly. DSCMR's pairwise term J2 (also ALGCN's L_nll) is `losses.dscmr_nll`,
and the per-modality label distance mean_i ||p_i - y_i||_2 is `losses.classification_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .losses import _masked_mean, classification_loss, dscmr_nll

# --- shared -------------------------------------------------------------------------------------


def paired_distance(u: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i ||u_i - v_i||_2 (the norm, not its square) over rows in `mask` (DSCMR's J3)."""
    return _masked_mean((u - v).norm(dim=1), mask)


def _both(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a & b


# --- DSCMR (Zhen et al., CVPR 2019) ---------------------------------------------------------------


def dscmr_loss(u: torch.Tensor, v: torch.Tensor, p_img: torch.Tensor, p_txt: torch.Tensor, y: torch.Tensor,
               nll_weight: float = 1e-3, pair_weight: float = 0.1, image_mask: torch.Tensor | None = None,
               text_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """DSCMR's objective J = J1 + nll_weight J2 + pair_weight J3 and its parts.

    J1 = mean_i ||p_i^img - y_i||_2 + mean_i ||p_i^txt - y_i||_2            (unsquared norms)
    J2 = sum over (u,u), (u,v), (v,v) of mean_ij log(1 + e^theta_ij) - S_ij theta_ij,
         theta_ij = cos(a_i, b_j) / 2, S_ij = y_i . y_j (count), i = j kept  (`dscmr_nll`)
    J3 = mean_i ||u_i - v_i||_2                                               (unsquared)
    Masks: J1 per modality over its present rows, J2 over pairs whose two modalities are
    present, J3 over rows with both modalities.
    """
    j1 = classification_loss(p_img, y, image_mask) + classification_loss(p_txt, y, text_mask)
    j2 = dscmr_nll(u, v, y, image_mask, text_mask)
    j3 = paired_distance(u, v, _both(image_mask, text_mask))
    return {"loss": j1 + nll_weight * j2 + pair_weight * j3, "label": j1, "nll": j2, "pair": j3}


# --- ALGCN (Qian et al., TMM 2021) ----------------------------------------------------------------


def eps_cosine_prediction(f: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """yhat_ik = f_i . w_k / (|f_i| |w_k| + eps): eps ADDED to the product of norms (not a clamp)."""
    return (f @ w.T) / (f.norm(dim=1)[:, None] * w.norm(dim=1)[None, :] + eps)


def structure_target(a: torch.Tensor, noise: torch.Tensor, cap: float = 0.5) -> torch.Tensor:
    """T = min(A + N, cap), N a Bernoulli(ratio) draw of A's shape (ALGCN's self-supervision target)."""
    return (a + noise).clamp(max=cap)


def structure_loss(adj: torch.Tensor, a: torch.Tensor, noises: list[torch.Tensor] | tuple[torch.Tensor, ...],
                   cap: float = 0.5) -> torch.Tensor:
    """L_ss = sum_l mean_ij (Â_ij - T^(l)_ij)^2 with T^(l) = min(A + N^(l), cap), one draw N^(l) per GCN layer.

    Â is the normalised learnable adjacency (its gradient reaches B); A and the draws are constants.
    """
    return sum(F.mse_loss(adj, structure_target(a, n, cap)) for n in noises)


def algcn_loss(f_img: torch.Tensor, f_txt: torch.Tensor, pred_img: torch.Tensor, pred_txt: torch.Tensor,
               y: torch.Tensor, adj: torch.Tensor, a: torch.Tensor, noises: list[torch.Tensor],
               nll_weight: float = 0.2, ss_weight: float = 0.5, image_mask: torch.Tensor | None = None,
               text_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """ALGCN's objective L = L_cla + nll_weight L_nll + ss_weight L_ss and its parts.

    L_cla = mean_i ||yhat_i^img - y_i||_2 + mean_i ||yhat_i^txt - y_i||_2   (unsquared norms)
    L_nll = DSCMR's J2 on the instance features (count S, i = j kept)       (`dscmr_nll`)
    L_ss  = `structure_loss(adj, a, noises)`
    """
    cla = classification_loss(pred_img, y, image_mask) + classification_loss(pred_txt, y, text_mask)
    nll = dscmr_nll(f_img, f_txt, y, image_mask, text_mask)
    ss = structure_loss(adj, a, noises)
    return {"loss": cla + nll_weight * nll + ss_weight * ss, "cla": cla, "nll": nll, "ss": ss}


# --- ACMR (Wang et al., ACM MM 2017) --------------------------------------------------------------


def acmr_label_loss(logits: torch.Tensor, y: torch.Tensor, single_label: bool,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i CE(softmax(logits_i), y_i) for single-label data; for multi-label data the
    multi-label form mean_i sum_k BCE(sigmoid(logits_ik), y_ik) (summed over labels, so a
    row weighs as much as a softmax cross-entropy row does)."""
    y = y.float()
    if single_label:
        per_row = -(y * F.log_softmax(logits, dim=1)).sum(1)
    else:
        per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1)
    return _masked_mean(per_row, mask)


def frobenius_distance(v: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_sim = ||V - T||_F = sqrt(sum_ik (v_ik - t_ik)^2) over the rows in `mask` (a sum, not a mean)."""
    diff = v - t
    if mask is not None:
        diff = diff * mask.to(diff.dtype)[:, None]
    return diff.pow(2).sum().sqrt()


def acmr_dissimilarity(v: torch.Tensor, t: torch.Tensor, y: torch.Tensor, margin: float = 0.1,
                       image_mask: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """L_dis = mean over all B x B pairs of max(0, margin - m_ij d_ij), as released:
    d_ij = sum_k v_ik + sum_k t_jk - v_i . t_j (plain coordinate sums), m_ij = 1 when items i, j
    share no label, else 0 (so same-label pairs contribute the constant `margin`).
    Masks: pairs with image i present and text j present."""
    d = v.sum(1)[:, None] + t.sum(1)[None, :] - v @ t.T
    yf = y.float()
    m = ((yf @ yf.T) == 0).to(d.dtype)
    loss = (margin - m * d).clamp_min(0.0)
    if image_mask is None and text_mask is None:
        return loss.mean()
    rows = torch.ones(v.shape[0], dtype=torch.bool, device=v.device) if image_mask is None else image_mask
    cols = torch.ones(t.shape[0], dtype=torch.bool, device=t.device) if text_mask is None else text_mask
    return _masked_mean(loss, rows[:, None] & cols[None, :])


def modality_loss(logits_img: torch.Tensor, logits_txt: torch.Tensor, image_mask: torch.Tensor | None = None,
                  text_mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_adv = mean_i CE(D(v_i), image) + mean_i CE(D(t_i), text); class 0 = image, 1 = text."""
    img = torch.zeros(logits_img.shape[0], dtype=torch.long, device=logits_img.device)
    txt = torch.ones(logits_txt.shape[0], dtype=torch.long, device=logits_txt.device)
    return (_masked_mean(F.cross_entropy(logits_img, img, reduction="none"), image_mask)
            + _masked_mean(F.cross_entropy(logits_txt, txt, reduction="none"), text_mask))


def dann_lambda(progress: float) -> float:
    """lambda_p = 2 / (1 + exp(-10 p)) - 1 (Ganin & Lempitsky's schedule; 0 at p = 0, -> 1)."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
