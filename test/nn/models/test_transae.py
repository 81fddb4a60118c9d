import math

import pytest
import torch

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import MODELS, TransAE
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain

N, R, D = 12, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def make(**kwargs):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    feats = {'image': torch.rand(N, 5, generator=g), 'text': torch.randn(N, 3, generator=g)}
    # entity 0 lacks both modalities; others lack one
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 0}
    kwargs.setdefault('modality_channels', {'image': 3, 'text': 2})
    model = TransAE(N, R, D, feats, masks, **kwargs).double()
    return model, {m: x.double() for m, x in feats.items()}, masks


def triples(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def sig(x):
    return 1.0 / (1.0 + torch.exp(-x))


def naive_input(model, feats, masks, m, e):
    r"""The encoder input of entity e: the feature, or the entity's noise row (the rows of
    the noise table follow the missing entities in order), or zeros."""
    if masks[m][e]:
        return feats[m][e]
    if model.missing == 'mask':
        return torch.zeros_like(feats[m][e])
    row = int((~masks[m][:e]).sum())
    return getattr(model.representation, f'noise_{m}')[row]


def naive_code(model, feats, masks, e):
    ae = model.representation
    v = []
    for m in ae.modalities:
        lin = ae.encoders[m]
        x = naive_input(model, feats, masks, m, e)
        v.append(sig(lin.weight @ x + lin.bias))
    W, b = ae.fusion_layer.weight, ae.fusion_layer.bias
    return sig(W @ torch.cat(v) + b)


def naive_reconstruction(model, code, m):
    ae = model.representation
    hid = sig(ae.decoder_hidden[m].weight @ code + ae.decoder_hidden[m].bias)
    return sig(ae.decoder_output[m].weight @ hid + ae.decoder_output[m].bias)


def naive_group_error(model, feats, masks, group):
    r"""Sum over modalities of the mean over the group's entities (present ones with
    missing='mask') and features of the squared reconstruction error."""
    total = 0.0
    for m in model.representation.modalities:
        errs = []
        for e in group:
            if model.missing == 'mask' and not masks[m][e]:
                continue
            x = naive_input(model, feats, masks, m, e)
            rec = naive_reconstruction(model, naive_code(model, feats, masks, e), m)
            errs.append(float(((x - rec)**2).sum()) / x.numel())
        total += sum(errs) / len(errs) if errs else 0.0
    return total


@pytest.mark.parametrize('missing', ['noise', 'mask'])
def test_autoencoder_equals_naive_transcription(missing):
    model, feats, masks = make(missing=missing)
    model.eval()
    idx = torch.arange(N)
    with torch.no_grad():
        code = model.code(idx)
        rec = model.reconstruct(idx)
        for e in range(N):
            c = naive_code(model, feats, masks, e)
            assert torch.allclose(code[e], c, atol=1e-12)
            for m in model.representation.modalities:
                x, x_rec = rec[m]
                assert torch.allclose(x[e], naive_input(model, feats, masks, m, e), atol=0)
                assert torch.allclose(x_rec[e], naive_reconstruction(model, c, m), atol=1e-12)


def test_missing_rows_noise_or_mask():
    model, feats, masks = make()
    bound = 6.0 / math.sqrt(D)
    noise = model.representation.noise_image
    assert noise.shape == (int((~masks['image']).sum()), 5)
    assert 0.8 * bound < float(noise.abs().max()) <= bound
    # the noise is model state: a model built with another seed scores alike once loaded
    other = TransAE(N, R, D, {m: x.float() for m, x in feats.items()}, masks,
                    modality_channels={'image': 3, 'text': 2}).double()
    assert not torch.equal(other.representation.noise_image, noise)
    other.load_state_dict(model.state_dict())
    h, r, t = triples()
    assert torch.equal(other(h, r, t), model(h, r, t))
    # masked: a missing row's stored value changes neither the code nor the reconstruction
    masked, feats, masks = make(missing='mask')
    assert not hasattr(masked.representation, 'noise_image')
    e = 3  # lacks the image
    assert not masks['image'][e]
    before = masked.code(torch.tensor([e]))
    lost = masked.reconstruction_loss(torch.tensor([e, 4]))
    masked.representation.x_image[e] += 100.0
    assert torch.equal(masked.code(torch.tensor([e])), before)
    assert torch.equal(masked.reconstruction_loss(torch.tensor([e, 4])), lost)
    # with noise the encoder reads the noise row, never the stored row
    model.representation.x_image[e] += 100.0
    assert torch.allclose(model.code(torch.tensor([e])),
                          naive_code(model, feats, masks, e), atol=1e-12)


@pytest.mark.parametrize('kwargs', [{}, {'missing': 'mask'}, {'p_norm': 2.0},
                                    {'normalize': True}])
def test_score_equals_naive_transcription(kwargs):
    model, feats, masks = make(**kwargs)
    model.eval()
    h, r, t = triples()
    with torch.no_grad():
        s = model(h, r, t)
        for b in range(h.numel()):
            eh = naive_code(model, feats, masks, int(h[b]))
            et = naive_code(model, feats, masks, int(t[b]))
            rel = model.rel_emb.weight[r[b]]
            if kwargs.get('normalize'):
                eh, rel, et = eh / eh.norm(), rel / rel.norm(), et / et.norm()
            p = kwargs.get('p_norm', 1.0)
            ref = -float((((eh + rel - et).abs())**p).sum())**(1.0 / p)
            assert abs(float(s[b]) - ref) < 1e-12
    assert_scoring_consistent(model, h, r, t, num_negatives=5, atol=1e-12)


@pytest.mark.parametrize('missing', ['noise', 'mask'])
def test_loss_equals_naive_transcription(missing):
    r"""beta * margin ranking + the reconstruction errors of the positives' heads and
    tails and of the negatives' heads and tails, after the fusion layer's renormalisation."""
    model, feats, masks = make(missing=missing, margin=2.0, ranking_weight=0.3)
    model.train()
    h, r, t = triples(5)
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(2))(h, r, t)
    W = model.representation.fusion_layer.weight.detach().clone()
    loss = model.loss(h, r, t, neg)
    # the rows of W_c were rescaled to unit L2 norm before the batch was scored
    assert torch.allclose(model.representation.fusion_layer.weight,
                          W / W.norm(dim=1, keepdim=True), atol=1e-15)
    with torch.no_grad():
        ch = neg.corrupt_head
        heads = torch.where(ch[:, None], neg.index, h[:, None])
        tails = torch.where(ch[:, None], t[:, None], neg.index)
        hinge = []
        for b in range(h.numel()):
            pos = float(model(h[b:b + 1], r[b:b + 1], t[b:b + 1]))
            for k in range(neg.index.size(1)):
                q = float(model(heads[b, k:k + 1], r[b:b + 1], tails[b, k:k + 1]))
                hinge.append(max(0.0, 2.0 - pos + q))
        ranking = 0.3 * sum(hinge) / len(hinge)
        groups = [h.tolist(), t.tolist(), heads.reshape(-1).tolist(),
                  tails.reshape(-1).tolist()]
        reconstruction = sum(naive_group_error(model, feats, masks, g) for g in groups)
    assert abs(float(loss.detach()) - ranking - reconstruction) < 1e-10
    terms = model.score_batch(h, r, t, neg).terms
    assert abs(float(terms['reconstruction'].detach()) - reconstruction) < 1e-10


def test_one_to_n_term_is_the_query_entities_reconstruction():
    model, feats, masks = make(reconstruction_weight=0.5)
    model.train()
    e, r, _ = triples(4)
    terms = model.score_queries(e, r).terms
    want = 0.5 * naive_group_error(model, feats, masks, e.tolist())
    assert abs(float(terms['reconstruction'].detach()) - want) < 1e-10


def test_reconstruction_trains_the_autoencoder():
    r"""With beta = 0 the loss is the reconstruction alone: its gradient reaches every
    encoder and decoder layer and the fusion layer (the autoencoder is trained), and not the
    relations; autoencoder=False and reconstruction_weight=0 remove it."""
    model, _, _ = make(ranking_weight=0.0)
    model.train()
    h, r, t = triples()
    neg = NegativeSampler(N, 2)(h, r, t)
    model.loss(h, r, t, neg).backward()
    ae = model.representation
    for name, p in ae.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert model.rel_emb.weight.grad is None or float(model.rel_emb.weight.grad.abs().sum()) == 0
    # both terms: the decoders get a gradient from the reconstruction only
    model, _, _ = make(reconstruction_weight=0.0)
    model.train()
    assert 'reconstruction' not in model.score_batch(h, r, t, neg).terms
    model.loss(h, r, t, neg).backward()
    dec = list(model.representation.decoder_hidden.parameters()) + list(
        model.representation.decoder_output.parameters())
    assert all(p.grad is None for p in dec)
    assert float(model.representation.fusion_layer.weight.grad.abs().sum()) > 0
    # the tables' TransE-like model: a free entity table, no reconstruction term
    plain, _, _ = make(autoencoder=False)
    assert plain.score_batch(h, r, t, neg).terms == {}
    assert plain.node_emb.weight.shape == (N, D)
    assert not any('decoder' in n or 'encoder' in n for n, _ in plain.named_parameters())
    with pytest.raises(RuntimeError, match='autoencoder=False'):
        plain.reconstruct(h)


def test_autoencoder_false_is_transe():
    model, _, _ = make(autoencoder=False, normalize=True)
    model.eval()
    h, r, t = triples()
    with torch.no_grad():
        E = torch.nn.functional.normalize(model.node_emb.weight, dim=-1)
        rel = torch.nn.functional.normalize(model.rel_emb.weight[r], dim=-1)
        ref = -(E[h] + rel - E[t]).abs().sum(-1)
        assert torch.allclose(model(h, r, t), ref, atol=1e-12)
    assert_scoring_consistent(model, h, r, t, atol=1e-12)


def test_code_only_switches():
    model, _, _ = make()
    rel = model.rel_emb.weight
    assert torch.allclose(rel.abs().sum(-1), torch.ones(R, dtype=rel.dtype))
    assert float(rel.abs().max()) <= 6.0 / math.sqrt(D)
    loose, _, _ = make(normalize_relations=False)
    assert not torch.allclose(loose.rel_emb.weight.abs().sum(-1), torch.ones(R).double())
    # the fusion layer is renormalised in training batches only, and only with the switch
    h, r, t = triples()
    neg = NegativeSampler(N, 2)(h, r, t)
    for train, flag, changes in ((False, True, False), (True, False, False),
                                 (True, True, True)):
        model, _, _ = make(renormalize_fusion=flag)
        model.train(train)
        W = model.representation.fusion_layer.weight.detach().clone()
        model.score_batch(h, r, t, neg)
        model.score_queries(h, r)
        after = model.representation.fusion_layer.weight
        assert torch.equal(after, W) != changes
        if changes:
            assert torch.allclose(after.norm(dim=1), torch.ones(D).double())
    # default widths: the original's 512 for images and 50 for any other modality
    plain = TransAE(N, R, D, {'image': torch.rand(N, 5), 'gloss': torch.rand(N, 3)})
    assert plain.representation.hidden == {'image': 512, 'gloss': 50}
    assert TransAE(N, R, D, {'image': torch.rand(N, 5)},
                   modality_channels=7).representation.hidden == {'image': 7}


def test_registered_and_bad_input():
    assert MODELS['TransAE'] is TransAE
    feats = {'image': torch.rand(N, 5)}
    with pytest.raises(ValueError, match='at least one modality'):
        TransAE(N, R, D, {})
    with pytest.raises(ValueError, match="missing must be one of 'noise', 'mask'"):
        TransAE(N, R, D, feats, missing='zeros')
    with pytest.raises(ValueError, match='margin must be'):
        TransAE(N, R, D, feats, margin=0.0)
    with pytest.raises(ValueError, match='ranking_weight must be'):
        TransAE(N, R, D, feats, ranking_weight=-1.0)
    with pytest.raises(ValueError, match='reconstruction_weight must be'):
        TransAE(N, R, D, feats, reconstruction_weight=float('nan'))
    with pytest.raises(ValueError, match='a width for each modality'):
        TransAE(N, R, D, feats, modality_channels={'text': 3})
    with pytest.raises(ValueError, match='modality_channels must be a positive integer'):
        TransAE(N, R, D, feats, modality_channels=0)
    with pytest.raises(ValueError, match='autoencoder must be one of'):
        TransAE(N, R, D, feats, autoencoder='yes')
    with pytest.raises(ValueError, match="'image' contain NaN"):
        TransAE(N, R, D, {'image': torch.full((N, 2), float('nan'))})
    assert TransAE(N, R, D, None, autoencoder=False).modalities == []


def chain_data(C=5, per=12, R=2, seed=0, dims=(8, 6)):
    r"""A planted pattern a translation can express: entities in C clusters on a line
    (features: a cluster prototype plus noise, 20% of the rows missing per modality) and
    relation r linking cluster c to cluster c + r + 1."""
    from torch_mmkg.data.mmkg import build_mmkg
    g = torch.Generator().manual_seed(seed)
    N = C * per
    cluster = torch.arange(N) // per
    rows = set()
    for r in range(R):
        for h in range(N):
            c = int(cluster[h]) + r + 1
            if c < C:
                rows.update((h, r, c * per + t)
                            for t in torch.randperm(per, generator=g)[:4].tolist())
    rows = torch.tensor(sorted(rows))
    rows = rows[torch.randperm(len(rows), generator=g)]
    n = len(rows) // 10
    splits = {'train': rows[2 * n:], 'val': rows[:n], 'test': rows[n:2 * n]}
    feats, masks = {}, {}
    for name, F in zip(('image', 'text'), dims):
        x = torch.randn(C, F, generator=g)[cluster] + 0.1 * torch.randn(N, F, generator=g)
        masks[name] = torch.rand(N, generator=g) > 0.2
        feats[name] = torch.where(masks[name][:, None], x, torch.zeros(()))
    return build_mmkg(N, R, splits, feats, masks)


def test_learns_planted_signal():
    data = chain_data()
    torch.manual_seed(0)
    model = TransAE.from_data(data, 8, modality_channels=8, margin=1.0, ranking_weight=1.0)
    before, after = planted_mrr_gain(model, data, epochs=30)
    assert after > before + 0.08
