import math

import torch

from torch_mmkg.nn import CLUBEstimator


def make():
    torch.manual_seed(0)
    return CLUBEstimator(3, 2, hidden_channels=8).double()


def test_bound_equals_its_definition():
    est = make()
    x, y = torch.randn(6, 3, dtype=torch.double), torch.randn(6, 2, dtype=torch.double)
    n = 6
    mu, logvar = est.mu_logvar(x)

    def logq(e, f):  # log q(y_f | x_e)
        return torch.distributions.Normal(mu[e], (0.5 * logvar[e]).exp()).log_prob(y[f]).sum()

    expected = sum(logq(e, e) - sum(logq(e, f) for f in range(n) if f != e) / (n - 1)
                   for e in range(n)) / n
    assert torch.allclose(est(x, y), expected)
    nll = -sum(logq(e, e) for e in range(n)) / n
    assert torch.allclose(est.learning_loss(x, y), nll)
    assert torch.allclose(est.log_likelihood(x, y),
                          torch.stack([logq(e, e) for e in range(n)]))
    assert est(x[:1], y[:1]) == 0


def test_frozen_bound_sends_no_gradient_to_the_network():
    est = make()
    x = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    y = torch.randn(5, 2, dtype=torch.double, requires_grad=True)
    est(x, y).backward()
    assert all(p.grad is None for p in est.parameters())
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    est(x, y, frozen=False).backward()
    assert all(p.grad is not None for p in est.parameters())


def test_fitted_bound_sees_dependence():
    torch.manual_seed(1)
    x = torch.randn(512, 3)
    dependent = x[:, :2] + 0.1 * torch.randn(512, 2)
    independent = torch.randn(512, 2)
    bounds = {}
    for name, y in (('dependent', dependent), ('independent', independent)):
        torch.manual_seed(0)
        est = CLUBEstimator(3, 2, 16)
        opt = torch.optim.Adam(est.parameters(), lr=0.01)
        for _ in range(300):
            opt.zero_grad()
            est.learning_loss(x, y).backward()
            opt.step()
        bounds[name] = float(est(x, y))
    # true MI of the dependent pair: 2 * 0.5 * log(1 + 1 / 0.01) = 4.6 nats
    assert bounds['dependent'] > 2.0
    assert abs(bounds['independent']) < 0.5
    assert math.isfinite(bounds['dependent'])
