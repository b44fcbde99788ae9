"""Gradient reversal, graph layers and the label GNN's layer aggregation."""

from __future__ import annotations

import math

import torch
from conftest import builtin_plugin
from torch import nn

gnn_layers = builtin_plugin("methods.common.layers")


def _grads(reverse: bool):
    torch.manual_seed(0)
    enc = nn.Linear(5, 4)
    head = nn.Linear(4, 2)
    x = torch.randn(6, 5)
    z = enc(x)
    z = gnn_layers.reverse_gradient(z) if reverse else z
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
    disc = gnn_layers.discriminator(16)
    x = torch.randn(8, 16, requires_grad=True)
    nn.functional.cross_entropy(disc(x), torch.ones(8, dtype=torch.long)).backward()
    g_rev = x.grad.clone()
    x.grad = None
    plain = nn.Sequential(*list(disc)[1:])
    nn.functional.cross_entropy(plain(x), torch.ones(8, dtype=torch.long)).backward()
    assert torch.allclose(g_rev, -x.grad)


def test_graph_convolution_is_adjacency_times_features_times_weight():
    conv = gnn_layers.GraphConvolution(3, 2)
    h, adj = torch.randn(4, 3), torch.rand(4, 4)
    assert torch.allclose(conv(h, adj), adj @ h @ conv.weight)


def test_graph_attention_only_attends_along_edges():
    torch.manual_seed(2)
    gat = gnn_layers.GraphAttention(3, 5)
    h = torch.randn(3, 3)
    adj = torch.eye(3)  # self-loops only: each node keeps its own transformed feature
    assert torch.allclose(gat(h, adj), gat.lin(h), atol=1e-6)
    adj[0, 1] = 0.3
    out = gat(h, adj)
    assert not torch.allclose(out[0], gat.lin(h)[0]) and torch.allclose(out[1:], gat.lin(h)[1:], atol=1e-6)


def test_label_gnn_aggregates_every_layer_or_returns_the_last():
    torch.manual_seed(3)
    h, adj = torch.randn(4, 6), torch.eye(4)
    agg = gnn_layers.LabelGNN(6, 5, layers=3, layer_agg=True)
    last = gnn_layers.LabelGNN(6, 5, layers=3, layer_agg=False)
    assert agg(h, adj).shape == (4, 5) and last(h, adj).shape == (4, 5)
    assert agg.aggregate.in_features == 15
    # without aggregation the output is the last layer's LeakyReLU output
    hs = h
    for conv in last.convs:
        hs = nn.functional.leaky_relu(conv(hs, adj), 0.2)
    assert torch.allclose(last(h, adj), hs)


def _identity_bn(dim):
    bn = nn.BatchNorm1d(dim).double().eval()
    bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) = x
    return bn


def test_decoders_end_in_their_activation_as_released():
    # BN (identity in eval mode) -> Linear I -> act -> Linear -I -> act on x = (1, 2):
    # hidden = act(1, 2) = (1, 2); last Linear gives (-1, -2);
    # ReLU (text -> image) ends at (0, 0), LeakyReLU(0.2) (image -> text) at (-0.2, -0.4).
    # (Stopping at the last Linear would leave (-1, -2).)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    for act, expect in ((nn.ReLU(), [0.0, 0.0]), (nn.LeakyReLU(0.2), [-0.2, -0.4])):
        dec = gnn_layers.decoder(2, 2, 2, act).double().eval()
        dec[0] = _identity_bn(2)
        with torch.no_grad():
            dec[1].weight.copy_(torch.eye(2))
            dec[1].bias.zero_()
            dec[3].weight.copy_(-torch.eye(2))
            dec[3].bias.zero_()
        assert torch.allclose(dec(x), torch.tensor([expect], dtype=torch.float64), atol=1e-7)
        open_ended = gnn_layers.decoder(2, 2, 2, act, end_with_act=False).double()
        assert len(open_ended) == len(dec) - 1


def test_gat_label_gnn_applies_elu_after_each_layer():
    # one GAT layer with W = -I and self-loops only: every node keeps its own W h = -h;
    # h = (1, 2) -> (-1, -2) -> ELU = (e^-1 - 1, e^-2 - 1) (LeakyReLU would give (-0.2, -0.4)).
    gnn = gnn_layers.LabelGNN(2, 2, layers=1, conv="gat", layer_agg=False).double()
    with torch.no_grad():
        gnn.convs[0].lin.weight.copy_(-torch.eye(2))
    h = torch.tensor([[1.0, 2.0], [0.5, 0.0]], dtype=torch.float64)
    out = gnn(h, torch.eye(2, dtype=torch.float64))
    expect = torch.tensor([[math.exp(-1) - 1, math.exp(-2) - 1], [math.exp(-0.5) - 1, 0.0]], dtype=torch.float64)
    assert torch.allclose(out, expect, atol=1e-12)
    # the GCN keeps LeakyReLU(0.2): W = -I, Â = I -> (-0.2, -0.4)
    gcn = gnn_layers.LabelGNN(2, 2, layers=1, conv="gcn", layer_agg=False).double()
    with torch.no_grad():
        gcn.convs[0].weight.copy_(-torch.eye(2))
    assert torch.allclose(gcn(h[:1], torch.eye(1, dtype=torch.float64)),
                          torch.tensor([[-0.2, -0.4]], dtype=torch.float64), atol=1e-12)
