"""Gradient reversal, graph layers and the label GNN's layer aggregation."""

from __future__ import annotations

import torch
from torch import nn

from bench.registry import load_plugins

load_plugins()
import _bench_plugins.methods.common.layers as Ly  # noqa: E402


def _grads(reverse: bool):
    torch.manual_seed(0)
    enc = nn.Linear(5, 4)
    head = nn.Linear(4, 2)
    x = torch.randn(6, 5)
    z = enc(x)
    z = Ly.reverse_gradient(z) if reverse else z
    loss = nn.functional.cross_entropy(head(z), torch.tensor([0, 1, 0, 1, 1, 0]))
    loss.backward()
    return enc.weight.grad.clone(), head.weight.grad.clone(), loss.item()


def test_gradient_reversal_flips_the_gradient_reaching_the_encoder_only():
    enc_plain, head_plain, loss_plain = _grads(False)
    enc_rev, head_rev, loss_rev = _grads(True)
    assert loss_rev == loss_plain  # identity forward
    assert enc_plain.abs().sum() > 0
    assert torch.allclose(enc_rev, -enc_plain)
    assert torch.allclose(head_rev, head_plain)


def test_discriminator_starts_with_gradient_reversal():
    torch.manual_seed(1)
    disc = Ly.discriminator(16)
    x = torch.randn(8, 16, requires_grad=True)
    nn.functional.cross_entropy(disc(x), torch.ones(8, dtype=torch.long)).backward()
    g_rev = x.grad.clone()
    x.grad = None
    plain = nn.Sequential(*list(disc)[1:])
    nn.functional.cross_entropy(plain(x), torch.ones(8, dtype=torch.long)).backward()
    assert torch.allclose(g_rev, -x.grad)


def test_graph_convolution_is_adjacency_times_features_times_weight():
    conv = Ly.GraphConvolution(3, 2)
    h, adj = torch.randn(4, 3), torch.rand(4, 4)
    assert torch.allclose(conv(h, adj), adj @ h @ conv.weight)


def test_graph_attention_only_attends_along_edges():
    torch.manual_seed(2)
    gat = Ly.GraphAttention(3, 5)
    h = torch.randn(3, 3)
    adj = torch.eye(3)  # self-loops only: each node keeps its own transformed feature
    assert torch.allclose(gat(h, adj), gat.lin(h), atol=1e-6)
    adj[0, 1] = 0.3
    out = gat(h, adj)
    assert not torch.allclose(out[0], gat.lin(h)[0]) and torch.allclose(out[1:], gat.lin(h)[1:], atol=1e-6)


def test_label_gnn_aggregates_every_layer_or_returns_the_last():
    torch.manual_seed(3)
    h, adj = torch.randn(4, 6), torch.eye(4)
    agg = Ly.LabelGNN(6, 5, layers=3, layer_agg=True)
    last = Ly.LabelGNN(6, 5, layers=3, layer_agg=False)
    assert agg(h, adj).shape == (4, 5) and last(h, adj).shape == (4, 5)
    assert agg.aggregate.in_features == 15
    # without aggregation the output is the last layer's LeakyReLU output
    hs = h
    for conv in last.convs:
        hs = nn.functional.leaky_relu(conv(hs, adj), 0.2)
    assert torch.allclose(last(h, adj), hs)
