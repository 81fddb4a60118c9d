import pytest
import torch

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.models.tbkgc import TBKGC
from torch_mmkg.testing import withCUDA

N, R, D = 20, 3, 6


def make(device='cpu', dtype=torch.float64, num_modalities=2, **kwargs):
    torch.manual_seed(0)
    widths = [5, 3, 4, 2, 7][:num_modalities]
    names = ['text', 'numeric', 'image', 'audio', 'video'][:num_modalities]
    feats = {m: torch.randn(N, f) for m, f in zip(names, widths)}
    masks = {m: torch.arange(N) % (i + 2) != 0 for i, m in enumerate(names)}
    # entity 0 lacks every modality
    model = TBKGC(N, R, D, feats, masks, **kwargs).to(device, dtype)
    return model, feats, masks


def triples(n=12, seed=1, device='cpu'):
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (n, ), generator=g)
    r = torch.randint(0, R, (n, ), generator=g)
    t = torch.randint(0, N, (n, ), generator=g)
    h[0], t[1] = 0, 0  # the entity without any modality on both sides
    return h.to(device), r.to(device), t.to(device)


def naive_score(model, h, r, t):
    r"""The energy of the paper transcribed triple by triple, in float64."""
    p = model.p_norm
    E = model.node_emb.weight.detach().double().cpu()
    Rel = model.rel_emb.weight.detach().double().cpu()

    def e_mm(e):
        out = torch.zeros(model.hidden_channels, dtype=torch.float64)
        for m in model.modalities:
            if getattr(model.representation, f'mask_{m}')[e]:
                W = model.representation.projection.mlps[m][0].weight.detach().double().cpu()
                out = out + W @ getattr(model.representation, f'x_{m}')[e].double().cpu()
        return out

    def norm(v):
        return (v.abs()**p).sum()**(1 / p)

    out = []
    for a, b, c in zip(h.tolist(), r.tolist(), t.tolist()):
        hs, hm, rr, ts, tm = E[a], e_mm(a), Rel[b], E[c], e_mm(c)
        energy = (norm(hs + rr - ts) + norm(hm + rr - tm) + norm(hs + rr - tm) +
                  norm(hm + rr - ts) + norm((hs + hm) + rr - (ts + tm)))
        out.append(-energy)
    return torch.stack(out)


@withCUDA
@pytest.mark.parametrize('p_norm', [1.0, 2.0])
def test_forward_matches_the_energy_formula(device, p_norm):
    model, _, masks = make(device, p_norm=p_norm)
    assert not masks['text'][0] and not masks['numeric'][0]
    h, r, t = triples(device=device)
    with torch.no_grad():
        s = model(h, r, t)
    assert s.shape == h.shape and s.dtype == torch.float64
    assert torch.allclose(s.cpu(), naive_score(model, h.cpu(), r.cpu(), t.cpu()), atol=1e-10)
    # the all-missing entity has e_mm = 0
    e_s, e_mm = model.embed(torch.tensor([0, 1], device=device))
    assert torch.equal(e_mm[0], torch.zeros_like(e_mm[0])) and e_mm[1].abs().sum() > 0


@withCUDA
@pytest.mark.parametrize('p_norm', [1.0, 2.0])
def test_one_vs_all_and_negatives_match_forward(device, p_norm):
    model, _, _ = make(device, p_norm=p_norm)
    model.eval()
    h, r, t = triples(device=device)
    with torch.no_grad():
        s = model(h, r, t)
        cache = model.prepare_scoring()
        assert cache.table.shape == (N, 2, D)  # the structural and multi-modal views
        tails = model.score_tails(h, r, cache=cache)
        heads = model.score_heads(r, t)
        assert tails.shape == heads.shape == (h.numel(), N)
        assert torch.allclose(tails.gather(1, t[:, None]).view(-1), s, atol=1e-10)
        assert torch.allclose(heads.gather(1, h[:, None]).view(-1), s, atol=1e-10)
        # every column, not only the true one
        all_e = torch.arange(N, device=device)
        assert torch.allclose(tails, model(h[:, None], r[:, None], all_e[None]), atol=1e-10)
        assert torch.allclose(heads, model(all_e[None], r[:, None], t[:, None]), atol=1e-10)

        for K in (4, 2 * N):  # batch entities as a subset, and the all-entity path
            gen = torch.Generator(device=device).manual_seed(0)
            neg = NegativeSampler(N, K, generator=gen)(h, r, t)
            assert neg.corrupt_head.any() and (~neg.corrupt_head).any()
            pos, scores = model.score_negatives(h, r, t, neg)
            ch = neg.corrupt_head[:, None]
            hh = torch.where(ch, neg.index, h[:, None])
            tt = torch.where(ch, t[:, None], neg.index)
            assert torch.allclose(pos, s, atol=1e-10)
            assert scores.shape == (h.numel(), K)
            assert torch.allclose(scores, model(hh, r[:, None].expand_as(hh), tt), atol=1e-10)

        # the interaction's candidate scoring from the all-entity views agrees as well
        table = model.prepare_scoring().table
        anchor, rel = model.entity(h), model.relation(r)
        cand = neg.index
        assert torch.allclose(model.interaction.score_candidates(anchor, rel, table, cand),
                              model(h[:, None], r[:, None], cand), atol=1e-10)
        anchor = model.entity(t)
        assert torch.allclose(model.interaction.score_candidates(anchor, rel, table, cand, True),
                              model(cand, r[:, None], t[:, None]), atol=1e-10)


@withCUDA
def test_score_stacks_protocol(device):
    model, _, masks = make(device)
    h, r, t = triples(device=device)
    hs, hm = model.modality_stack(h)
    assert hs.shape == (h.numel(), 3, D) and hm.shape == (h.numel(), 3)
    assert hm.dtype == torch.bool and hm[:, 0].all()
    assert torch.equal(hm[:, 1].cpu(), masks['text'][h.cpu()])
    assert torch.equal(hm[:, 2].cpu(), masks['numeric'][h.cpu()])
    assert torch.equal(hs[:, 0], model.node_emb(h))
    rep = model.representation
    assert torch.allclose(hs[:, 2], rep.x_numeric[h] @ rep.projection.mlps['numeric'][0].weight.T)
    stack, mask = model.modality_stack()
    assert stack.shape == (N, 3, D) and mask.shape == (N, 3)
    assert torch.equal(stack[h], hs) and torch.equal(mask[h], hm)

    s = model(h, r, t)
    assert torch.allclose(s, model.score_stacks(hs, hm, r, *model.modality_stack(t)))
    # leading dims broadcast: [B, 1] heads against [B, K] tails
    cand = torch.randint(0, N, (h.numel(), 5), device=device)
    ref = model(h[:, None], r[:, None], cand)
    assert ref.shape == cand.shape
    cs, cm = model.modality_stack(cand)
    assert torch.allclose(model.score_stacks(hs[:, None], hm[:, None], r[:, None], cs, cm),
                          ref)
    # a masked slot does not count whatever it holds (a synthetic entity of CoMAT)
    cs2 = torch.where(cm[..., None], cs, torch.full_like(cs, 1e6))
    assert torch.allclose(model.score_stacks(hs[:, None], hm[:, None], r[:, None], cs2, cm),
                          ref)
    # gradients flow into the stack
    cs = cs.detach().requires_grad_()
    model.score_stacks(hs[:, None], hm[:, None], r[:, None], cs, cm).sum().backward()
    assert cs.grad[..., 0, :].abs().sum() > 0


@withCUDA
def test_missing_features_never_enter_the_score(device):
    model, _, masks = make(device)
    model.eval()
    h, r, t = triples(device=device)
    with torch.no_grad():
        before, tails, heads = model(h, r, t), model.score_tails(h, r), model.score_heads(r, t)
        for m in model.modalities:  # garbage into every missing row
            x, k = model.representation.features(m), model.representation.mask(m)
            x[~k] = 1e3 * torch.randn(int((~k).sum()), x.size(1), device=device,
                                      dtype=x.dtype)
        assert torch.allclose(model(h, r, t), before, atol=1e-10)
        assert torch.allclose(model.score_tails(h, r), tails, atol=1e-10)
        assert torch.allclose(model.score_heads(r, t), heads, atol=1e-10)

    plain = make(device, mask_missing=False)[0].eval()
    with torch.no_grad():
        before = plain(h, r, t)
        # unmasked, the stored rows are summed as they are: reproduces the naive formula
        # with every mask set
        for m in plain.modalities:
            getattr(plain.representation, f'mask_{m}').fill_(True)
        assert torch.allclose(plain(h, r, t).cpu(),
                              naive_score(plain, h.cpu(), r.cpu(), t.cpu()), atol=1e-10)
        for m in plain.modalities:
            getattr(plain.representation, f'mask_{m}').copy_(masks[m])
        plain.representation.x_text[~masks['text'].to(device)] += 5.0
        assert not torch.allclose(plain(h, r, t), before, atol=1e-3)


def test_learns_planted_permutation(single_thread):
    n, K = 30, 8
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(n, generator=g) for _ in range(2)]
    h = torch.arange(n).repeat(2)
    r = torch.arange(2).repeat_interleave(n)
    t = torch.cat([perms[0][h[:n]], perms[1][h[n:]]])  # t = pi_r(h)
    feats = {'id': torch.eye(n), 'noise': torch.randn(n, 4, generator=g)}
    masks = {'id': torch.ones(n, dtype=torch.bool), 'noise': torch.arange(n) % 2 == 0}
    torch.manual_seed(0)
    model = TBKGC(n, 2, 16, feats, masks, margin=4.0)
    assert isinstance(model.loss_fn, MarginRankingLoss) and model.loss_fn.margin == 4.0
    before = model.test(h, r, t, log=False)[1]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sampler = NegativeSampler(n, K, generator=torch.Generator().manual_seed(1))
    for step in range(300):
        opt.zero_grad()
        loss = model.loss(h, r, t, sampler(h, r, t))
        loss.backward()
        if step == 0:
            for m in model.modalities:
                assert model.representation.projection.mlps[m][0].weight.grad.abs().sum() > 0
            assert model.node_emb.weight.grad.abs().sum() > 0
        opt.step()
    mr, mrr, hits = model.test(h, r, t, log=False)
    assert before < 0.3
    assert mrr > 0.8 and hits > 0.95, (before, mr, mrr, hits)


def test_regularization_and_loss():
    model = make(dtype=torch.float32, regularization_weight=0.5)[0]
    h, r, t = triples()
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    pos, scores = model.score_negatives(h, r, t, neg)
    plain = model.loss_fn(pos, scores)
    # the penalty: the mean square of each scored view (structural and multi-modal of heads,
    # tails and candidates) and of the relations, written out
    (h_s, h_mm), (t_s, t_mm) = model.embed(h), model.embed(t)
    c_s, c_mm = model.embed(neg.index)
    views = (h_s, h_mm, model.relation(r), t_s, t_mm, c_s, c_mm)
    reg = 0.5 * sum(x.pow(2).mean() for x in views)
    assert torch.allclose(model.loss(h, r, t, neg), plain + reg)
    terms = model.score_batch(h, r, t, neg).terms
    assert torch.allclose(terms['regularization'], reg)
    # the penalty reaches the structural, relation and projection parameters
    terms['regularization'].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad()
    model.regularization_weight = 0.0
    assert torch.allclose(model.loss(h, r, t, neg), plain)
    # the regime is outside the model: TBKGC also trains 1-N
    target = torch.zeros(h.numel(), N)
    target[torch.arange(h.numel()), t] = 1.0
    assert torch.isfinite(model.loss_1n(h, r, target))


@pytest.mark.parametrize('num_modalities', [1, 5])
def test_number_of_modalities(num_modalities):
    model, _, _ = make(num_modalities=num_modalities)
    assert len(model.modalities) == num_modalities
    h, r, t = triples()
    stack, mask = model.modality_stack(h)
    assert stack.shape == (h.numel(), num_modalities + 1, D)
    assert mask.shape == (h.numel(), num_modalities + 1)
    with torch.no_grad():
        s = model(h, r, t)
        assert torch.allclose(s, naive_score(model, h, r, t), atol=1e-10)
        assert torch.allclose(s, model.score_stacks(stack, mask, r,
                                                    *model.modality_stack(t)))
        assert torch.allclose(model.score_tails(h, r).gather(1, t[:, None]).view(-1), s)
        assert torch.allclose(model.score_heads(r, t).gather(1, h[:, None]).view(-1), s)
    assert f'modalities={model.modalities}' in repr(model)


def test_reset_parameters():
    model = make()[0]
    before = [p.detach().clone() for p in model.parameters()]
    model.reset_parameters()
    after = list(model.parameters())
    assert len(before) == 2 + len(model.modalities)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_bad_input():
    x = torch.randn(N, 2)
    with pytest.raises(ValueError, match="'text' contain NaN"):
        TBKGC(N, R, 4, {'text': torch.full((N, 2), float('nan'))})
    bad = x.clone()
    bad[3, 1] = float('inf')
    with pytest.raises(ValueError, match="'img' contain NaN or Inf"):
        TBKGC(N, R, 4, {'text': x, 'img': bad})
    with pytest.raises(ValueError, match=r"'text' must be \[20, F\]"):
        TBKGC(N, R, 4, {'text': torch.randn(N + 1, 2)})
    with pytest.raises(ValueError, match=r"'text' must be \[20, F\]"):
        TBKGC(N, R, 4, {'text': torch.randn(N)})
    with pytest.raises(ValueError, match="mask of 'text'.*bool"):
        TBKGC(N, R, 4, {'text': x}, {'text': torch.ones(N)})
    with pytest.raises(ValueError, match="mask of 'text'.*bool"):
        TBKGC(N, R, 4, {'text': x}, {'text': torch.ones(N + 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="'image'"):
        TBKGC(N, R, 4, {'text': x}, {'image': torch.ones(N, dtype=torch.bool)})
    with pytest.raises(ValueError, match='at least one modality'):
        TBKGC(N, R, 4, {})
    with pytest.raises(ValueError, match='p_norm'):
        TBKGC(N, R, 4, {'text': x}, p_norm=0.5)
    with pytest.raises(ValueError, match="'a.b'"):
        TBKGC(N, R, 4, {'a.b': x})
