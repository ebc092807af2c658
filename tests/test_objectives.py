"""Objective values and gradients against hand-computed small cases."""

import math

import pytest
import torch

from onchip_ff.negatives import hardest_wrong_labels, random_wrong_labels
from onchip_ff.objectives.distance_forward import Centroids, centroid_goodness, npair_margin_loss
from onchip_ff.objectives.forward_forward import embed_label, ff_goodness, ff_loss

H = [[1.0, 0.0], [0.6, 0.8]]
C = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
Y = [0, 1]


def test_centroid_goodness_by_hand():
    g = centroid_goodness(torch.tensor(H, dtype=torch.float64), torch.tensor(C, dtype=torch.float64))
    # squared distances: sample 0 -> 0, 2, 4; sample 1 -> 0.8, 0.4, 3.2
    assert torch.allclose(g, -torch.tensor([[0.0, 2.0, 4.0], [0.8, 0.4, 3.2]], dtype=torch.float64))


def test_npair_margin_loss_value_by_hand():
    s, m = 2.0, 0.5
    g = -torch.tensor([[0.0, 2.0, 4.0], [0.8, 0.4, 3.2]], dtype=torch.float64)
    loss = npair_margin_loss(g, torch.tensor(Y), s, m)
    l0 = math.log(1 + math.exp(2 * (-2 - 0 + 0.5)) + math.exp(2 * (-4 - 0 + 0.5)))
    l1 = math.log(1 + math.exp(2 * (-0.8 + 0.4 + 0.5)) + math.exp(2 * (-3.2 + 0.4 + 0.5)))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-12)


def test_npair_margin_loss_gradient_closed_form():
    """dL/dg_ik = s*sigma_ik/N (k != y), dL/dg_iy = -s*sum_k sigma_ik/N; dg/dh = -2(h - c_k)."""
    s, m = 3.0, 0.25
    gen = torch.Generator().manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen, dtype=torch.float64), dim=1)
    c = torch.nn.functional.normalize(torch.randn(3, 4, generator=gen, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 1, 2, 1, 0])
    h.requires_grad_(True)
    loss = npair_margin_loss(centroid_goodness(h, c), y, s, m)
    (grad,) = torch.autograd.grad(loss, h)
    expected = torch.zeros_like(h)
    n = len(y)
    for i in range(n):
        g = [-float(((h[i].detach() - c[k]) ** 2).sum()) for k in range(3)]
        a = {k: s * (g[k] - g[y[i]] + m) for k in range(3) if k != y[i]}
        z = 1 + sum(math.exp(v) for v in a.values())
        dg = [0.0] * 3
        for k, v in a.items():
            dg[k] = s * math.exp(v) / z / n
            dg[int(y[i])] -= s * math.exp(v) / z / n
        for k in range(3):
            expected[i] += dg[k] * (-2.0) * (h[i].detach() - c[k])
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_npair_margin_loss_gradcheck():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([4, 0, 2, 2])
    assert torch.autograd.gradcheck(lambda t: npair_margin_loss(t, y, 16.0, 0.2), (g,))


def test_centroids_unit_length_and_ema_update():
    gen = torch.Generator().manual_seed(0)
    cen = Centroids(3, 2, "ema", 0.5, gen)
    assert torch.allclose(cen.unit().norm(dim=1), torch.ones(2))
    assert not any(p.requires_grad for p in cen.parameters())
    before = cen.unit().clone()
    h = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    cen.ema_update(h, torch.tensor([0, 0]))
    expected0 = torch.nn.functional.normalize(0.5 * before[0] + 0.5 * h[0], dim=0)
    assert torch.allclose(cen.unit()[0], expected0, atol=1e-6)
    assert torch.allclose(cen.unit()[1], before[1])  # class 1 absent from the batch
    learn = Centroids(3, 2, "learnable", 0.0, gen)
    assert [p.shape for p in learn.parameters()] == [torch.Size([2, 3])]


def test_ff_goodness_and_loss_by_hand():
    pos = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    g_pos, g_neg = ff_goodness(pos), ff_goodness(neg)
    assert g_pos.tolist() == [2.5, 0.5] and g_neg.tolist() == [4.5, 1.0]
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
    loss = ff_loss(g_pos, g_neg, 2.0)
    assert loss.item() == pytest.approx((sp(-0.5) + sp(1.5) + sp(2.5) + sp(-1.0)) / 4, rel=1e-12)
    (grad,) = torch.autograd.grad(loss, pos)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    expected = [[-sig(2 - gp) * 2 * v / 2 / 4 for v in row] for gp, row in zip([2.5, 0.5], pos.tolist())]
    assert torch.allclose(grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_embed_label_writes_one_hot_into_first_pixels():
    x = torch.full((2, 1, 4, 4), 7.0)
    out = embed_label(x, torch.tensor([2, 0]), 3, 0.5)
    flat = out.flatten(1)
    assert flat[0, :3].tolist() == [0.0, 0.0, 0.5] and flat[1, :3].tolist() == [0.5, 0.0, 0.0]
    assert (flat[:, 3:] == 7.0).all() and (x == 7.0).all()


def test_negative_labels_are_wrong():
    y = torch.arange(10).repeat(100)
    neg = random_wrong_labels(y, 10, torch.Generator().manual_seed(0))
    assert (neg != y).all() and set(neg.tolist()) == set(range(10))
    scores = torch.tensor([[5.0, 4.0, 1.0], [0.0, 9.0, 3.0]])
    assert hardest_wrong_labels(scores, torch.tensor([0, 1])).tolist() == [1, 2]
