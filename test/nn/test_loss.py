import math

import pytest
import torch
import torch.nn.functional as F

from torch_mmkg.nn import (BCELoss, MarginRankingLoss, SelfAdversarialLoss, SoftplusLoss,
                           l2_regularization, n3_regularization)
from torch_mmkg.nn.loss import LOSSES

DTYPE = torch.float64


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def scores(B=4, K=5, seed=0):
    torch.manual_seed(seed)
    return 3 * torch.randn(B, dtype=DTYPE), 3 * torch.randn(B, K, dtype=DTYPE)


def naive_self_adversarial(pos, neg, alpha):
    total = 0.0
    for b in range(pos.numel()):
        z = [math.exp(alpha * float(x)) for x in neg[b]]
        w = [v / sum(z) for v in z]
        total += 0.5 * (-log_sigmoid(float(pos[b])) -
                        sum(w[i] * log_sigmoid(-float(neg[b, i])) for i in range(len(w))))
    return total / pos.numel()


@pytest.mark.parametrize('alpha', [0.0, 0.5, 1.0, 2.0])
def test_self_adversarial_value(alpha):
    pos, neg = scores()
    out = SelfAdversarialLoss(alpha)(pos, neg)
    assert out.dim() == 0
    assert math.isclose(out.item(), naive_self_adversarial(pos, neg, alpha), rel_tol=1e-12)
    # The same formula written with torch ops.
    w = torch.softmax(alpha * neg, dim=-1)
    ref = 0.5 * (-F.logsigmoid(pos) - (w * F.logsigmoid(-neg)).sum(-1)).mean()
    assert torch.allclose(out, ref, atol=1e-12)


def test_self_adversarial_temperature_zero_is_uniform():
    pos, neg = scores(seed=1)
    K = neg.size(1)
    out = SelfAdversarialLoss(0.0)(pos, neg)
    ref = 0.5 * (-F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1) / K).mean()
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize('alpha', [0.0, 1.0, 3.0])
def test_self_adversarial_weights_are_constants(alpha):
    pos, neg = scores(seed=2)
    pos.requires_grad_(True)
    neg.requires_grad_(True)
    SelfAdversarialLoss(alpha)(pos, neg).backward()
    B, K = neg.shape
    # With p = softmax(alpha * neg) held constant:
    #   d/d neg_bi = 0.5 / B * p_bi * sigmoid(neg_bi),  d/d pos_b = -0.5 / B * sigmoid(-pos_b)
    pos_v, neg_v = pos.detach(), neg.detach()
    for b in range(B):
        z = [math.exp(alpha * float(x)) for x in neg_v[b]]
        for i in range(K):
            expected = 0.5 / B * z[i] / sum(z) * sigmoid(float(neg_v[b, i]))
            assert math.isclose(neg.grad[b, i].item(), expected, rel_tol=1e-10, abs_tol=1e-15)
        assert math.isclose(pos.grad[b].item(), -0.5 / B * sigmoid(-float(pos_v[b])),
                            rel_tol=1e-10)
    if alpha:
        # A gradient through the softmax would differ (so the check above can fail).
        neg2 = neg.detach().clone().requires_grad_(True)
        w = torch.softmax(alpha * neg2, dim=-1)
        (0.5 * (-(w * F.logsigmoid(-neg2)).sum(-1)).mean()).backward()
        assert not torch.allclose(neg2.grad, neg.grad, atol=1e-6)


def test_margin_ranking():
    pos, neg = scores(seed=3)
    for margin in (0.0, 1.0, 4.0):
        out = MarginRankingLoss(margin)(pos, neg)
        B, K = neg.shape
        ref = sum(max(0.0, margin - float(pos[b]) + float(neg[b, i])) for b in range(B)
                  for i in range(K)) / (B * K)
        assert math.isclose(out.item(), ref, rel_tol=1e-12, abs_tol=1e-15)
    # Zero once every positive beats every negative by the margin.
    assert MarginRankingLoss(1.0)(torch.tensor([5.0]), torch.tensor([[3.9, 1.0]])).item() == 0


def test_softplus():
    pos, neg = scores(seed=4)
    B, K = neg.shape
    out = SoftplusLoss()(pos, neg)
    ref = 0.5 * (sum(math.log1p(math.exp(-float(x))) for x in pos) / B +
                 sum(math.log1p(math.exp(float(x))) for x in neg.view(-1)) / (B * K))
    assert math.isclose(out.item(), ref, rel_tol=1e-12)


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.3])
def test_bce_label_smoothing(eps):
    torch.manual_seed(5)
    B, N = 3, 7
    logits = 2 * torch.randn(B, N, dtype=DTYPE)
    y = (torch.rand(B, N) < 0.3)
    y[0, 0] = True
    smoothed = (1 - eps) * y.to(DTYPE) + (1.0 / N if eps else 0.0)
    out = BCELoss(eps)(logits, y)
    assert torch.allclose(out, F.binary_cross_entropy_with_logits(logits, smoothed),
                          atol=1e-12)
    ref = -sum(float(smoothed[b, n]) * log_sigmoid(float(logits[b, n])) +
               (1 - float(smoothed[b, n])) * log_sigmoid(-float(logits[b, n]))
               for b in range(B) for n in range(N)) / (B * N)
    assert math.isclose(out.item(), ref, rel_tol=1e-12)
    # Float 0/1 targets give the same loss as bool ones.
    assert torch.allclose(BCELoss(eps)(logits, y.float()), out, atol=1e-12)


def test_bce_smoothing_matches_tucker_code():
    # TuckER: targets = ((1.0 - label_smoothing) * targets) + (1.0 / targets.size(1))
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    logits = torch.zeros(1, 4)
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.925, 0.025,
                                                                         0.025, 0.025]]))
    assert torch.allclose(BCELoss(0.1)(logits, y), expected)


def test_bce_shape_mismatch():
    with pytest.raises(ValueError, match=r'\(3, 7\).*\(3, 6\)'):
        BCELoss()(torch.zeros(3, 7), torch.zeros(3, 6))


@pytest.mark.parametrize('cls', [SelfAdversarialLoss, MarginRankingLoss, SoftplusLoss])
def test_negative_sampling_shape_errors(cls):
    loss = cls()
    with pytest.raises(ValueError, match=r'\(4,\).*\(5, 3\)'):
        loss(torch.zeros(4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r'\(4,\).*\(4,\)'):
        loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r'\(4, 1\).*\(4, 3\)'):
        loss(torch.zeros(4, 1), torch.zeros(4, 3))


def test_l2_regularization():
    torch.manual_seed(6)
    x, y = torch.randn(4, 6, dtype=DTYPE), torch.randn(3, 2, 5, dtype=DTYPE)
    out = l2_regularization(x, y, weight=0.3)
    ref = 0.3 * (sum(float(v)**2 for v in x.view(-1)) / x.numel() +
                 sum(float(v)**2 for v in y.view(-1)) / y.numel())
    assert math.isclose(out.item(), ref, rel_tol=1e-12)


def test_n3_regularization_complex():
    torch.manual_seed(7)
    x, y = torch.randn(4, 6, dtype=DTYPE), torch.randn(5, 6, dtype=DTYPE)
    out = n3_regularization(x, y, weight=0.2)
    ref = 0.0
    for z in (x, y):
        c = torch.complex(z[:, :3], z[:, 3:])  # real parts, then imaginary parts
        ref += float((c.abs()**3).sum(-1).mean())
    assert math.isclose(out.item(), 0.2 * ref, rel_tol=1e-12)
    # Modulus cubed, not the sum of cubed real and imaginary parts.
    assert not math.isclose(out.item(), n3_regularization(x, y, weight=0.2,
                                                          complex_=False).item())
    # Hand example: |3 + 4i|^3 = 125.
    assert n3_regularization(torch.tensor([[3.0, 4.0]])).item() == pytest.approx(125.0)


def test_n3_regularization_gradient_at_zero():
    # a zero complex coordinate (a masked slot) has the gradient 0 of |x|^3, not NaN
    x = torch.tensor([[0.0, 1.0, 0.0, 2.0]], dtype=DTYPE, requires_grad=True)
    n3_regularization(x).backward()
    # d/d re of (re^2 + im^2)^1.5 is 3 re |x|: 0 at the zero coordinate; at 1 + 2i, 3 * 1 * √5
    # for the real part and 3 * 2 * √5 for the imaginary part (the second half)
    want = [0.0, 3.0 * math.sqrt(5.0), 0.0, 6.0 * math.sqrt(5.0)]
    assert x.grad[0].tolist() == pytest.approx(want, rel=1e-12)


def test_n3_regularization_real():
    torch.manual_seed(8)
    x = torch.randn(4, 5, dtype=DTYPE)
    out = n3_regularization(x, weight=0.5, complex_=False)
    ref = 0.5 * sum(sum(abs(float(v))**3 for v in row) for row in x) / 4
    assert math.isclose(out.item(), ref, rel_tol=1e-12)


def test_losses_registry():
    assert LOSSES['self_adversarial'] is SelfAdversarialLoss
    assert LOSSES['margin'] is MarginRankingLoss
    assert LOSSES['softplus'] is SoftplusLoss
    assert LOSSES['bce'] is BCELoss


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_bce_weighted_candidates_and_gradient(eps):
    # The weighted form averages the elementwise loss over the judged candidates only, and
    # the closed form (softplus minus target times logit) has the elementwise gradient.
    torch.manual_seed(6)
    B, N = 4, 9
    logits = (3 * torch.randn(B, N, dtype=DTYPE)).requires_grad_()
    y = torch.rand(B, N) < 0.3
    w = (torch.rand(N) < 0.6).to(DTYPE)
    smoothed = (1 - eps) * y.to(DTYPE) + (1.0 / N if eps else 0.0)
    elementwise = F.binary_cross_entropy_with_logits(logits, smoothed, reduction='none')
    expected = (elementwise * w).sum() / (B * w.sum())
    out = BCELoss(eps)(logits, y, w)
    assert torch.allclose(out, expected, atol=1e-12)
    g_out, = torch.autograd.grad(out, logits)
    g_ref, = torch.autograd.grad(expected, logits)
    assert torch.allclose(g_out, g_ref, atol=1e-12)
    g_plain, = torch.autograd.grad(BCELoss(eps)(logits, y), logits)
    assert torch.allclose(g_plain, (torch.sigmoid(logits) - smoothed).detach() / (B * N),
                          atol=1e-12)
