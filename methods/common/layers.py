"""Neural building blocks: gradient reversal, graph convolution / attention, label GNN, encoders."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by -coeff (Ganin & Lempitsky 2015)."""
    return _ReverseGrad.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form of `reverse_gradient`."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coeff)


class GraphConvolution(nn.Module):
    """H' = Â H W (Kipf & Welling; no bias, as ML-GCN)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        nn.init.uniform_(self.weight, -d_out ** -0.5, d_out ** -0.5)

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return adj @ (h @ self.weight)


class GraphAttention(nn.Module):
    """Single-head GAT, no output activation: H'_i = sum_j softmax_j(LeakyReLU_0.2(a_s.Wh_i + a_d.Wh_j)) W h_j
    over the j with adj_ij > 0."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out, bias=False)
        self.a_src = nn.Parameter(torch.empty(d_out).uniform_(-d_out ** -0.5, d_out ** -0.5))
        self.a_dst = nn.Parameter(torch.empty(d_out).uniform_(-d_out ** -0.5, d_out ** -0.5))

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        z = self.lin(h)
        e = F.leaky_relu((z @ self.a_src)[:, None] + (z @ self.a_dst)[None, :], 0.2)
        e = e.masked_fill(adj <= 0, float("-inf"))
        return torch.softmax(e, dim=1) @ z


class LabelGNN(nn.Module):
    """L graph layers H_{l+1} = act(conv(H_l, adj)); classifiers C = Linear(concat H_1..H_L)
    with layer aggregation, else C = H_L.

    act is LeakyReLU(0.2) for graph convolution and ELU for graph attention, as released
    (the release's GAT layer ends in ELU and gets no further activation). `adj` is Â for the
    GCN; for the GAT only its pattern (adj > 0) matters.
    """

    def __init__(self, d_in: int, dim: int, layers: int, conv: str = "gcn", layer_agg: bool = True) -> None:
        super().__init__()
        layer = {"gcn": GraphConvolution, "gat": GraphAttention}[conv]
        self.act = nn.ELU() if conv == "gat" else nn.LeakyReLU(0.2)
        self.convs = nn.ModuleList(layer(d_in if i == 0 else dim, dim) for i in range(layers))
        self.aggregate = nn.Linear(layers * dim, dim) if layer_agg else None

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        hs = []
        for conv in self.convs:
            h = self.act(conv(h, adj))
            hs.append(h)
        return self.aggregate(torch.cat(hs, dim=1)) if self.aggregate is not None else hs[-1]


def encoder(d_in: int, dim: int) -> nn.Sequential:
    """BN -> Linear(d_in -> dim) -> ReLU."""
    return nn.Sequential(nn.BatchNorm1d(d_in), nn.Linear(d_in, dim), nn.ReLU())


def decoder(dim: int, hidden: int, d_out: int, act: nn.Module, end_with_act: bool = True) -> nn.Sequential:
    """BN -> Linear(dim -> hidden) -> act -> Linear(hidden -> d_out) -> act: common space to an
    input space. The release ends both decoders in their activation (ReLU for text -> image, so
    reconstructed VGG-like features stay non-negative; LeakyReLU(0.2) for image -> text);
    `end_with_act=False` stops at the last Linear."""
    tail = [copy.deepcopy(act)] if end_with_act else []
    return nn.Sequential(nn.BatchNorm1d(dim), nn.Linear(dim, hidden), act, nn.Linear(hidden, d_out), *tail)


def discriminator(d_in: int, coeff: float = 1.0) -> nn.Sequential:
    """Gradient reversal -> BN -> d -> d/4 -> d/16 -> 2 (ReLU between): real vs generated features."""
    h1, h2 = max(2, d_in // 4), max(2, d_in // 16)
    return nn.Sequential(GradientReversal(coeff), nn.BatchNorm1d(d_in), nn.Linear(d_in, h1), nn.ReLU(),
                         nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 2))


ENCODE_BATCH = 4096  # rows per forward pass when encoding a whole split (bounded memory)


@torch.no_grad()
def encode_in_batches(enc: Any, feats: Any, device: torch.device, dim: int, batch: int = ENCODE_BATCH) -> Any:
    """`enc` applied to the rows of `feats` (a numpy array, or None) in chunks of `batch` on
    `device`; float32 numpy (n, dim) back on the host, None for None, (0, dim) for no rows."""
    import numpy as np

    if feats is None:
        return None
    feats = np.asarray(feats, dtype=np.float32)
    out = [enc(torch.as_tensor(feats[i:i + batch], device=device)).float().cpu()
           for i in range(0, feats.shape[0], batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, dim), np.float32)
