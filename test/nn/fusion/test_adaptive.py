import math

import pytest
import torch

from torch_mmkg.nn import AdaptiveFusion, ModalityProjection


def naive_weights(stack, v, tau, mask=None):
    B, M, _ = stack.shape
    out = torch.zeros(B, M, dtype=stack.dtype)
    for b in range(B):
        logits = [float((v * torch.tanh(stack[b, m])).sum()) / tau[b] for m in range(M)]
        present = [m for m in range(M) if mask is None or bool(mask[b, m])]
        z = sum(math.exp(logits[m]) for m in present)
        for m in present:
            out[b, m] = math.exp(logits[m]) / z
    return out


def test_weights_equal_formula_with_relation_temperature():
    torch.manual_seed(0)
    fusion = AdaptiveFusion(5, num_relations=3).double()
    with torch.no_grad():
        fusion.zeta.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    stack = torch.randn(6, 4, 5, dtype=torch.double)
    rel = torch.tensor([0, 1, 2, 0, 1, 2])
    joint, w = fusion(stack, rel=rel)
    tau = torch.sigmoid(fusion.zeta[rel]).tolist()
    ref = naive_weights(stack, fusion.v.detach(), tau)
    assert torch.allclose(w, ref, atol=1e-12)
    assert torch.allclose(joint, (ref[..., None] * stack).sum(1), atol=1e-12)
    # the temperature matters: the same entity under two relations gets different weights
    w0 = fusion.weights(stack[:1], rel=torch.tensor([0]))
    w2 = fusion.weights(stack[:1], rel=torch.tensor([2]))
    assert not torch.allclose(w0, w2)


def test_missing_modalities_are_masked_out():
    torch.manual_seed(1)
    fusion = AdaptiveFusion(3).double()
    stack = torch.randn(4, 3, 3, dtype=torch.double)
    mask = torch.tensor([[True, True, True], [True, False, True], [True, False, False],
                         [False, False, False]])
    joint, w = fusion(stack, mask)
    ref = naive_weights(stack, fusion.v.detach(), [1.0] * 4, mask)
    assert torch.allclose(w, ref, atol=1e-12)
    assert (w[~mask] == 0).all() and torch.allclose(w[:3].sum(-1), torch.ones(3).double())
    assert torch.equal(joint[3], torch.zeros(3).double())  # nothing present: zero vector
    assert torch.allclose(joint[2], stack[2, 0])  # only the structure present
    # the paper's behaviour: missing rows take part in the softmax
    plain = AdaptiveFusion(3, mask_missing=False).double()
    plain.load_state_dict(fusion.state_dict())
    assert torch.allclose(plain.weights(stack, mask), naive_weights(
        stack, fusion.v.detach(), [1.0] * 4), atol=1e-12)


def test_gradients_reach_v_and_zeta_and_errors():
    fusion = AdaptiveFusion(4, num_relations=2)
    stack = torch.randn(3, 2, 4)
    joint, _ = fusion(stack, rel=torch.tensor([0, 1, 1]))
    joint.pow(2).sum().backward()
    assert fusion.v.grad.abs().sum() > 0 and (fusion.zeta.grad != 0).all()
    with pytest.raises(ValueError, match='pass rel'):
        fusion(stack)
    with pytest.raises(ValueError, match='width 4'):
        fusion(torch.randn(3, 2, 5), rel=torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match='does not match'):
        AdaptiveFusion(4)(stack, torch.ones(3, 3, dtype=torch.bool))


def test_modality_projection():
    torch.manual_seed(2)
    proj = ModalityProjection({'image': 6, 'text': 3}, out_channels=4, hidden_channels=5)
    x = {'image': torch.randn(7, 6), 'text': torch.randn(7, 3)}
    out = proj(x)
    assert set(out) == {'image', 'text'} and out['image'].shape == (7, 4)
    mlp = proj.mlps['text']
    ref = mlp[2](torch.relu(mlp[0](x['text'])))
    assert torch.allclose(out['text'], ref)
    with pytest.raises(ValueError, match="\\['text'\\] are missing"):
        proj({'image': x['image']})
