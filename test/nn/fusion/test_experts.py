import pytest
import torch

from torch_mmkg.nn import ModalityExperts


def make(**kwargs):
    torch.manual_seed(0)
    layer = ModalityExperts(5, 4, num_experts=3, **kwargs).double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.w_gate.normal_()
        layer.w_noise.normal_()
    return layer


def test_experts_and_gated_sum_equal_their_formulas():
    layer = make().eval()
    x = torch.randn(7, 5, dtype=torch.double)
    tau = torch.rand(7, dtype=torch.double) + 0.1
    out, values, gates = layer(x, tau)
    for b in range(7):
        for i in range(3):
            assert torch.allclose(values[b, i], (x[b] - layer.bias[i]) @ layer.weight[i])
        g = torch.softmax((x[b] @ layer.w_gate) / tau[b], dim=0)
        assert torch.allclose(gates[b], g)
        assert torch.allclose(out[b], (g[:, None] * values[b]).sum(0))
    assert torch.allclose(gates.sum(-1), torch.ones(7, dtype=torch.double))


def test_temperature_sharpens_the_gate():
    layer = make().eval()
    x = torch.randn(6, 5, dtype=torch.double)
    g1 = layer.gates(x)
    cold = layer.gates(x, torch.full((6, ), 0.2, dtype=torch.double))
    assert not torch.allclose(g1, cold)
    assert (cold.max(-1).values >= g1.max(-1).values - 1e-12).all()
    assert torch.equal(cold.argmax(-1), g1.argmax(-1))


def test_noise_only_in_training_and_scaled_by_softplus():
    layer = make().train()
    x = torch.randn(4000, 5, dtype=torch.double)
    torch.manual_seed(1)
    noisy = layer.gate_logits(x)
    clean = x @ layer.w_gate
    std = torch.nn.functional.softplus(x @ layer.w_noise) + layer.noise_epsilon
    z = ((noisy - clean) / std).detach()  # standard normal if the noise is N(0, std)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    assert torch.equal(layer.eval().gate_logits(x), clean)
    quiet = make(noisy_gating=False).train()
    assert torch.equal(quiet.gate_logits(x), x @ quiet.w_gate)
    assert torch.equal(quiet.gates(x), quiet.gates(x))


def test_zero_initialised_gate_is_uniform():
    layer = ModalityExperts(5, 4, 3).eval()
    g = layer.gates(torch.randn(3, 5))
    assert torch.allclose(g, torch.full_like(g, 1 / 3))
    with pytest.raises(ValueError, match='width 5'):
        layer(torch.randn(2, 6))
    with pytest.raises(ValueError, match='num_experts'):
        ModalityExperts(5, 4, 0)
