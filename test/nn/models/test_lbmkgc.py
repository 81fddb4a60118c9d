import math

import pytest
import torch
import torch.nn.functional as F

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import LBMKGC
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain, withCUDA

N, R, D = 20, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def make(dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    feats = {'image': torch.randn(N, 5), 'text': torch.randn(N, 3)}
    # entity 0 has no modality at all; others miss one or the other
    masks = {'image': (torch.arange(N) % 3 != 0), 'text': (torch.arange(N) % 2 == 1)}
    model = LBMKGC(N, R, D, feats, masks, margin=6.0, **kwargs).to(dtype)
    with torch.no_grad():  # a non-trivial relation context
        if getattr(model.fusion, 'gate', None) is not None:
            model.fusion.gate.copy_(torch.tensor([-1.5, 0.3, 2.0]))
    return model, feats, masks


def triples(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def naive_joint(model, e, r, feats, masks):
    r"""Eqs. 9–11 for one entity, written out."""
    s = model.node_emb.weight[e]
    present = [m for m in model.modalities if not model.mask_missing or masks[m][e]]
    if type(model.fusion).__name__ == 'MeanFusion':
        mlps = model.representation.projection.mlps
        reps = [s] + [mlps[m](feats[m][e].to(s.dtype)) for m in present]
        return sum(reps) / len(reps)
    if not present:
        return s
    reps = {m: model.representation.projection.mlps[m](feats[m][e].to(s.dtype)) for m in present}
    v = model.fusion.modal.v
    logits = {m: torch.dot(v, torch.tanh(x)) for m, x in reps.items()}
    z = sum(math.exp(float(logit)) for logit in logits.values())
    h_mm = sum(math.exp(float(logits[m])) / z * reps[m] for m in present)
    if not getattr(model, 'use_structure', True):  # "w/o e_s": the modality part alone
        return h_mm
    zeta = 1.0 / (1.0 + math.exp(-float(model.fusion.gate[r])))
    return zeta * s + (1.0 - zeta) * h_mm


def naive_score(model, h, r, t, feats, masks):
    hj = naive_joint(model, h, r, feats, masks)
    tj = naive_joint(model, t, r, feats, masks)
    d = model.hidden_channels
    hc = torch.complex(hj[:d], hj[d:])
    tc = torch.complex(tj[:d], tj[d:])
    theta = model.rel_emb.weight[r] * (math.pi / model.embedding_range)
    return model.interaction.margin - (hc * torch.exp(1j * theta) - tc).abs().sum()


@pytest.mark.parametrize('kwargs', [{}, {'fusion': 'mean'}, {'mask_missing': False},
                                    {'projection_layers': 1}, {'use_structure': False},
                                    {'use_structure': False, 'mask_missing': False}])
def test_score_equals_naive_transcription(kwargs):
    model, feats, masks = make(**kwargs)
    model.eval()
    h, r, t = triples()
    with torch.no_grad():
        s = model(h, r, t)
        ref = torch.stack([naive_score(model, int(a), int(b), int(c), feats, masks)
                           for a, b, c in zip(h, r, t)])
        assert torch.allclose(s, ref, atol=1e-9)
    assert_scoring_consistent(model, h, r, t, num_negatives=6, atol=1e-9)


def test_relation_context_and_missing_modalities():
    model, feats, masks = make()
    model.eval()
    e = torch.arange(N)
    with torch.no_grad():
        stack, mask = model.modality_stack(e)
        # an entity without any modality is its structural embedding, whatever the relation
        for r in range(R):
            assert torch.equal(model.fuse(stack[0], mask[0], torch.tensor(r)),
                               model.node_emb.weight[0])
        # other entities move with zeta_r between e_s and h_mm
        j0 = model.fuse(stack, mask, torch.tensor(0))
        j2 = model.fuse(stack, mask, torch.tensor(2))
        assert not torch.allclose(j0[1:], j2[1:])
        pair, has = model.pair(stack, mask)
        z = torch.sigmoid(model.fusion.gate[2])
        assert torch.allclose(j2[has], z * pair[has, 0] + (1 - z) * pair[has, 1])
        # omega sums to one over the modalities the entity has, zero elsewhere
        w = model.modality_weights(stack, mask)
        assert torch.allclose(w.sum(-1)[has], torch.ones_like(w.sum(-1)[has]))
        assert torch.all(w[~mask[:, 1:]] == 0)
    # features of a missing modality never change a score ...
    h, r, t = triples()
    before = model(h, r, t).detach()
    model.representation.x_text[~model.representation.mask_text] += 100.0
    assert torch.equal(model(h, r, t).detach(), before)
    # ... unless masking is switched off
    model.mask_missing = model.fusion.modal.mask_missing = False
    assert not torch.allclose(model(h, r, t).detach(), before)


def test_without_structural_embedding():
    # Table 2, "w/o e_s": the joint embedding is h_mm alone, whatever the relation
    model, feats, masks = make(use_structure=False)
    model.eval()
    assert model.fusion.gate is None and not model.fusion.relation_dependent
    assert not any('gate' in name for name in model.state_dict())
    e = torch.arange(N)
    with torch.no_grad():
        stack, mask = model.modality_stack(e)
        pair, has = model.pair(stack, mask)
        for r in range(R):
            joint = model.fuse(stack, mask, torch.tensor(r))
            assert torch.equal(joint[has], pair[has, 1])
            assert torch.equal(joint[~has], pair[~has, 0])  # entity 0: nothing else to use
        assert torch.equal(model.zeta(torch.arange(R)), torch.zeros(R, dtype=torch.float64))
    h, r, t = triples(40)
    with_modality = has[h] & has[t]
    assert with_modality.sum() >= 10
    before = model(h, r, t).detach()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.node_emb.weight.add_(torch.randn(model.node_emb.weight.shape, generator=gen,
                                               dtype=torch.float64))
    after = model(h, r, t).detach()
    # the structural embedding no longer influences the score of entities with a modality ...
    assert torch.equal(after[with_modality], before[with_modality])
    # ... and gets no gradient from them
    model.zero_grad()
    model(h[with_modality], r[with_modality], t[with_modality]).sum().backward()
    assert model.node_emb.weight.grad is None or not model.node_emb.weight.grad.any()
    # while the full model's scores move with it
    full, _, _ = make()
    full.eval()
    s0 = full(h, r, t).detach()
    with torch.no_grad():
        full.node_emb.weight.add_(1.0)
    assert not torch.allclose(full(h, r, t).detach()[with_modality], s0[with_modality])
    # scoring all entities and sampled candidates agrees with the forward pass
    assert_scoring_consistent(model, h, r, t, num_negatives=6, atol=1e-9)
    # one epoch of training touches the projections and the attention vector
    model.train()
    neg = NegativeSampler(N, 4, generator=torch.Generator().manual_seed(0))(h, r, t)
    model.zero_grad()
    model.loss(h, r, t, neg).backward()
    assert model.fusion.modal.v.grad.abs().sum() > 0


def test_without_structural_embedding_needs_cguaf():
    feats = {'text': torch.randn(N, 3)}
    with pytest.raises(ValueError, match="use_structure=False.*fusion='context'"):
        LBMKGC(N, R, D, feats, fusion='mean', use_structure=False)
    with pytest.raises(ValueError, match='use_structure must be true or false'):
        LBMKGC(N, R, D, feats, use_structure='no')
    from torch_mmkg.nn.fusion import ContextGatedFusion
    fusion = ContextGatedFusion(2 * D, R, use_structure=False)
    with pytest.raises(ValueError, match='contradicts the given fusion'):
        LBMKGC(N, R, D, feats, fusion=fusion)
    assert LBMKGC(N, R, D, feats, fusion=fusion, use_structure=False).fusion is fusion
    assert LBMKGC(N, R, D, feats, fusion='CGuAF', use_structure=False).fusion.gate is None


def test_gate_is_learnt():
    model, _, _ = make(dtype=torch.float32)
    h, r, t = triples(16)
    neg = NegativeSampler(N, 4, generator=torch.Generator().manual_seed(0))(h, r, t)
    model.loss(h, r, t, neg).backward()
    used = torch.unique(r)
    assert torch.all(model.fusion.gate.grad[used] != 0)
    assert model.fusion.modal.v.grad.abs().sum() > 0


def test_alignment_loss():
    model, feats, masks = make(alignment_weight=0.5, alignment_temperature=0.2)
    assert math.isclose(float(model.alignment_temperature.detach()), 0.2, rel_tol=1e-6)
    h, r, t = triples(16)
    neg = NegativeSampler(N, 4, generator=torch.Generator().manual_seed(0))(h, r, t)
    e = torch.unique(torch.cat([h, t]))  # the positives' entities
    stack, mask = model.modality_stack(e)
    both = mask[:, 1] & mask[:, 2]
    a, b = stack[both, 1], stack[both, 2]
    # Eq. 8 written out
    S = torch.stack([torch.stack([F.cosine_similarity(a[i], b[j], dim=0)
                                  for j in range(len(b))]) for i in range(len(a))]) / 0.2
    n = len(a)
    naive = -0.5 * (sum(S[i, i] - torch.logsumexp(S[i], 0) for i in range(n)) / n +
                    sum(S[i, i] - torch.logsumexp(S[:, i], 0) for i in range(n)) / n)
    assert torch.allclose(model.alignment_loss(stack, mask), naive, atol=1e-9)
    # the model loss adds lambda times it
    plain, _, _ = make()
    plain.load_state_dict(model.state_dict(), strict=False)
    total = model.loss(h, r, t, neg)
    assert torch.allclose(total, plain.loss(h, r, t, neg) + 0.5 * naive, atol=1e-9)
    total.backward()
    assert model.align_logit_scale.grad is not None


def test_errors():
    feats = {'text': torch.randn(N, 3)}
    with pytest.raises(ValueError, match='at least one modality'):
        LBMKGC(N, R, D, {})
    with pytest.raises(ValueError, match='fusion must be a registered fusion'):
        LBMKGC(N, R, D, feats, fusion='nope')
    # any registered fusion (any case) is a constructor argument
    assert type(LBMKGC(N, R, D, feats, fusion='Attention').fusion).__name__ == 'AttentionFusion'
    with pytest.raises(ValueError, match='two modalities'):
        LBMKGC(N, R, D, feats, alignment_weight=0.1)
    model = LBMKGC(N, R, D, feats)
    with pytest.raises(RuntimeError, match='depends on the relation'):
        model.entity(torch.arange(3))
    with pytest.raises(ValueError, match=r'targets must be \[3, 20\]'):
        model.loss_1n(torch.arange(3), torch.zeros(3, dtype=torch.long), torch.zeros(3, 2))


def test_learns_planted_signal():
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4,
                           num_triples=600, modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    model = LBMKGC.from_data(data, 8, margin=2.0)
    before, after = planted_mrr_gain(model, data)
    assert after > before + 0.1


@withCUDA
def test_device(device):
    model, _, _ = make(dtype=torch.float32, alignment_weight=0.1)
    model = model.to(device)
    h, r, t = (x.to(device) for x in triples())
    neg = NegativeSampler(N, 4)(h, r, t)
    loss = model.loss(h, r, t, neg)
    loss.backward()
    assert torch.isfinite(loss)
    with torch.no_grad():
        scores = model.score_tails(h, r)
    assert scores.device.type == torch.device(device).type
    assert torch.allclose(scores.gather(1, t[:, None]).view(-1), model(h, r, t).detach(),
                          atol=1e-4)
