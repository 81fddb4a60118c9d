import pytest
import torch

from torch_mmkg.nn import AttentionFusion


def naive(fusion, stack, mask):
    out = torch.zeros(stack.size(0), fusion.out_channels, dtype=stack.dtype)
    for b in range(stack.size(0)):
        for h in range(fusion.num_heads):
            proj = [torch.relu(stack[b, m] @ fusion.weight[h, m] + fusion.bias[h, m])
                    for m in range(fusion.num_slots)]
            avail = [m for m in range(fusion.num_slots) if mask[b, m]]
            logits = torch.stack([proj[m] @ fusion.attention if fusion.adaptive
                                  else stack.new_zeros(()) for m in avail])
            alpha = torch.softmax(logits, dim=0)
            out[b] += sum(a * proj[m] for a, m in zip(alpha, avail))
    return out


@pytest.mark.parametrize('adaptive', [True, False])
def test_fusion_equals_its_formula_and_ignores_missing_slots(adaptive):
    torch.manual_seed(0)
    fusion = AttentionFusion(4, 3, num_slots=3, num_heads=2, adaptive=adaptive).double().eval()
    stack = torch.randn(5, 3, 4, dtype=torch.double)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1]]).bool()
    out, alpha = fusion(stack, mask)
    assert torch.allclose(out, naive(fusion, stack, mask))
    assert alpha.shape == (5, 2, 3)
    assert (alpha[~mask[:, None, :].expand_as(alpha)] == 0).all()
    if not adaptive:  # uniform over the available slots
        expected = mask.double() / mask.sum(-1, keepdim=True)
        assert torch.allclose(alpha, expected[:, None].expand_as(alpha))
    changed = stack.clone()
    changed[~mask] = 100.0
    assert torch.allclose(fusion(changed, mask)[0], out)
    # without masking every slot counts
    plain = AttentionFusion(4, 3, 3, 2, adaptive=adaptive, mask_missing=False).double().eval()
    plain.load_state_dict(fusion.state_dict())
    assert not torch.allclose(plain(changed, mask)[0], out)


def test_shapes_and_errors():
    fusion = AttentionFusion(4, 6, num_slots=2)
    out, alpha = fusion(torch.randn(2, 3, 2, 4))
    assert out.shape == (2, 3, 6) and alpha.shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match=r'\[\*, 2, 4\]'):
        fusion(torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match='does not match'):
        fusion(torch.randn(3, 2, 4), torch.ones(3, 3, dtype=torch.bool))
    # an entity with nothing available gets a zero vector, not NaN
    out, _ = fusion(torch.randn(1, 2, 4), torch.zeros(1, 2, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(1, 6))
