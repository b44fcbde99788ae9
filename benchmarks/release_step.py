"""The authors' released training step (LivXue/GNN4CMR, P-GNN with GCN), re-implemented from the
paper's equations and the facts of the release (see methods/gnn_con.py) for timing side by side
with ours (our own code).

It runs on the modules of one of our `GNNConModel`s (same layers, same weights), but computes the
way the release does: each prediction, decoder and discriminator output separately, three
similarity matrices and an exp/sum/log denominator per contrastive term, label similarity
min(y y^T, 1) (binary positives), host-created constant tensors copied to the device, a NaN check
of each batch and `loss.item()` after each step (both host reads, as in its loop), and Adam in
its default implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _ce(logits: torch.Tensor, cls: int) -> torch.Tensor:
    target = (torch.ones if cls else torch.zeros)(logits.shape[0], dtype=torch.long).to(logits.device)
    return F.cross_entropy(logits, target)


def _con_term(sim: torch.Tensor, pro: torch.Tensor) -> torch.Tensor:
    logits = sim - torch.log(torch.exp(1.06 * sim).sum(1, keepdim=True))
    return (pro * logits).sum(1).mean()


def release_loss(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, alpha: float, beta: float,
                 tau: float, gamma: float) -> torch.Tensor:
    """alpha L_cla + L_con + beta L_gan of one batch, computed in the release's order (P-GNN, GCN)."""
    m = model
    u, v = m.enc_img(x), m.enc_txt(t)
    h, hs = m.h0, []
    for conv in m.gnn.convs:
        h = F.leaky_relu(torch.matmul(m.adj, torch.matmul(h, conv.weight)), 0.2)
        hs.append(h)
    c = m.gnn.aggregate(torch.cat(hs, -1))
    norm_img = torch.norm(u, dim=1)[:, None] * torch.norm(c, dim=1)[None, :] + 1e-6
    norm_txt = torch.norm(v, dim=1)[:, None] * torch.norm(c, dim=1)[None, :] + 1e-6
    ct = c.transpose(0, 1)
    pred_img, pred_txt = torch.matmul(u, ct) / norm_img, torch.matmul(v, ct) / norm_txt
    text_like, image_like = m.dec_img2txt(u), m.dec_txt2img(v)
    d_img_real, d_img_fake = m.disc_img(x), m.disc_img(image_like)
    d_txt_fake, d_txt_real = m.disc_txt(text_like), m.disc_txt(t)

    cla = ((pred_img - y) ** 2).sum(1).sqrt().mean() + ((pred_txt - y) ** 2).sum(1).sqrt().mean()

    un, vn = F.normalize(u, dim=1), F.normalize(v, dim=1)
    s12, s11, s22 = un @ vn.T / tau, un @ un.T / tau, vn @ vn.T / tau
    share = (y @ y.T).clamp(max=1.0)
    pro_inter = share / share.sum(1, keepdim=True).clamp(min=1e-6)
    intra = (share - torch.eye(share.shape[0]).to(share.device, share.dtype)).clamp(min=0)
    pro_intra = intra / intra.sum(1, keepdim=True).clamp(min=1e-6)
    con = (-_con_term(s12, pro_inter) - _con_term(s12.T, pro_inter)
           - gamma * (_con_term(s11, pro_intra) + _con_term(s22, pro_intra)))

    gan = _ce(d_img_real, 1) + _ce(d_img_fake, 0) + _ce(d_txt_fake, 1) + _ce(d_txt_real, 0)
    return alpha * cla + con + beta * gan


class ReleaseStep:
    """step(x, t, y): one release training step on `model` (a P-GNN GCN `GNNConModel`), returns the loss."""

    def __init__(self, model, lr: float, betas: tuple[float, float], alpha: float, beta: float, tau: float,
                 gamma: float) -> None:
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
        self.weights = (alpha, beta, tau, gamma)
        self.running = 0.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> float:
        if torch.sum(x != x) > 1 or torch.sum(t != t) > 1:
            print("Data contains NaN.")
        self.opt.zero_grad()
        loss = release_loss(self.model, x, t, y, *self.weights)
        loss.backward()
        self.opt.step()
        value = loss.item()
        self.running += value
        return value
