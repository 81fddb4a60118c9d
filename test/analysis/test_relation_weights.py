import json
import math
import sys
from types import SimpleNamespace

import pytest
import torch

from torch_mmkg.analysis import RelationModalityWeights, relation_modality_weights
from torch_mmkg.data.mmkg import build_mmkg
from torch_mmkg.nn.models.native import NATIVE

N, R, H = 24, 5, 4  # entities, relations, complex width (real width 2H)
TEXT_MASK = torch.arange(N) % 3 != 0
NUMERIC_MASK = torch.arange(N) % 2 == 0


def make_model(masks=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    feats = {'text': torch.randn(N, 5), 'numeric': torch.randn(N, 3)}
    masks = {'text': TEXT_MASK, 'numeric': NUMERIC_MASK} if masks else None
    return NATIVE(N, R, H, feats, masks, **kwargs), feats


def random_triples(n, rels, seed=1, entities=N):
    g = torch.Generator().manual_seed(seed)
    rels = torch.as_tensor(rels)
    return (torch.randint(0, entities, (n, ), generator=g),
            rels[torch.randint(0, rels.numel(), (n, ), generator=g)],
            torch.randint(0, entities, (n, ), generator=g))


def naive_reference(model, head, rel, tail, num_relations):
    r"""Loops over the triples one at a time: the fusion's weights with the relation's
    temperature, and the temperature-1 weights recomputed by hand with masking."""
    M1 = len(model.modalities) + 1
    sums = torch.zeros(num_relations, M1, dtype=torch.float64)
    sums0 = torch.zeros(num_relations, M1, dtype=torch.float64)
    occ = torch.zeros(num_relations, dtype=torch.float64)
    zeta = model.fusion.zeta
    with torch.no_grad():
        for h, r, t in zip(head.tolist(), rel.tolist(), tail.tolist()):
            for e in (h, t):
                stack, mask = model.modality_stack(torch.tensor([e]))
                w = model.fusion.weights(stack, mask, torch.tensor([r]))[0]
                logits = torch.tanh(stack[0]) @ model.fusion.v
                tau = torch.sigmoid(zeta[r]) if zeta is not None else 1.0
                by_hand = torch.softmax((logits / tau).masked_fill(~mask[0], -math.inf), 0)
                assert torch.allclose(w, by_hand, atol=1e-6)
                w0 = torch.softmax(logits.masked_fill(~mask[0], -math.inf), 0)
                sums[r] += w.double()
                sums0[r] += w0.double()
                occ[r] += 1
    return sums / occ[:, None], sums0 / occ[:, None]  # NaN where occ == 0


def test_matches_naive_reference_and_empty_relations_are_nan():
    model, feats = make_model()
    with torch.no_grad():
        model.fusion.zeta.copy_(torch.tensor([-2.0, 0.5, 1.5, -1.0, -6.0]))
    train = torch.stack(random_triples(40, [0, 1, 2, 3]), dim=1)  # relation 4: no train triple
    test = torch.stack(random_triples(6, [4, 1], seed=2), dim=1)
    names = ['born_in', 'genre', 'capital', 'leader', 'spoken_in']
    data = build_mmkg(N, R, {'train': train, 'test': test}, feats,
                      {'text': TEXT_MASK, 'numeric': NUMERIC_MASK}, relation_names=names)

    res = relation_modality_weights(model, data, top_k=3, batch_size=7)
    assert isinstance(res, RelationModalityWeights)
    assert res.modalities == ['structure', 'text', 'numeric']
    assert res.relation_names == names
    h, r, t = train[:, 0], train[:, 1], train[:, 2]
    ref_w, ref_n = naive_reference(model, h, r, t, R)
    assert torch.equal(res.count, torch.bincount(r, minlength=R))
    assert res.count[4] == 0
    assert torch.allclose(res.temperature, torch.sigmoid(model.fusion.zeta.detach()))
    assert torch.allclose(res.weights.double(), ref_w, atol=1e-5, equal_nan=True)
    assert torch.allclose(res.neutral.double(), ref_n, atol=1e-5, equal_nan=True)
    assert torch.allclose(res.lift.double(), ref_w - ref_n, atol=1e-5, equal_nan=True)
    assert res.weights[4].isnan().all() and res.neutral[4].isnan().all()
    assert res.lift[4].isnan().all()
    assert not res.weights[:4].isnan().any()
    assert torch.allclose(res.weights[:4].sum(-1), torch.ones(4), atol=1e-5)
    assert res.lift.abs()[:4].max() > 1e-3  # the temperatures do move the weights

    for j, m in enumerate(res.modalities):
        entries = res.top[m]
        assert len(entries) <= 3
        assert all(name != 'spoken_in' for name, _, _ in entries)
        lifts = [lift for _, lift, _ in entries]
        assert lifts == sorted(lifts, reverse=True) and all(x > 0 for x in lifts)
        positive = sorted((float(res.lift[i, j]), names[i]) for i in range(4)
                          if res.lift[i, j] > 0)[::-1][:3]
        assert [name for name, _, _ in entries] == [name for _, name in positive]
        for name, lift, count in entries:
            i = names.index(name)
            assert count == int(res.count[i]) and lift == pytest.approx(float(res.lift[i, j]))

    # triples given directly (test split holds relation 4) agree with the naive loop too
    h, r, t = test[:, 0], test[:, 1], test[:, 2]
    direct = relation_modality_weights(model, triples=(h, r, t))
    ref_w, ref_n = naive_reference(model, h, r, t, R)
    assert torch.allclose(direct.weights.double(), ref_w, atol=1e-5, equal_nan=True)
    assert torch.allclose(direct.neutral.double(), ref_n, atol=1e-5, equal_nan=True)
    assert direct.relation_names == [f'r{i}' for i in range(R)]
    via_split = relation_modality_weights(model, data, split='test')
    assert torch.allclose(via_split.weights, direct.weights, equal_nan=True)
    assert via_split.relation_names == names


def test_planted_relation_raises_text():
    model, feats = make_model(masks=False)
    group = torch.arange(6)  # the entities whose text dominates
    x = feats['text'].clone()
    x[:, 0] = -5.0
    x[group, 0] = 5.0
    model.representation.x_text.copy_(x)
    with torch.no_grad():
        mlp = model.representation.projection.mlps['text']
        first, last = mlp[0], mlp[-1]
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, 0] = 1.0  # hidden_0 = relu(x_0)
        last.weight.zero_()
        last.weight[:, 0] = 1.0  # e_text = hidden_0 - 1: 4 in the group, -1 outside
        last.bias.fill_(-1.0)
        model.representation.projection.mlps['numeric'][-1].weight.mul_(0.05)
        model.representation.projection.mlps['numeric'][-1].bias.zero_()
        model.node_emb.weight.mul_(0.1)
        model.fusion.v.fill_(0.25)  # text logit 2 in the group, about -1.5 outside
        model.fusion.zeta.copy_(torch.tensor([-6.0, 8.0, 0.0, -6.0, 0.0]))

    g = torch.Generator().manual_seed(3)
    others = torch.arange(6, N)
    h = torch.cat([group[torch.randint(0, 6, (10, ), generator=g)],
                   torch.randint(0, N, (10, ), generator=g),
                   others[torch.randint(0, N - 6, (20, ), generator=g)]])
    t = torch.cat([group[torch.randint(0, 6, (10, ), generator=g)],
                   torch.randint(0, N, (10, ), generator=g),
                   others[torch.randint(0, N - 6, (20, ), generator=g)]])
    r = torch.tensor([0] * 10 + [1] * 10 + [2] * 10 + [3] * 10)
    res = relation_modality_weights(model, triples=(h, r, t), relation_names=list('ABCDE'))

    text = res.modalities.index('text')
    assert res.top['text'][0][0] == 'A'
    assert res.top['text'][0][1] > 0.1
    assert res.top['text'][0][2] == 10
    assert res.weights[0, text] > 0.99  # sharpened to the dominant text slot
    assert res.lift[1].abs().max() < 2e-3  # sigma(8) ~ 1: no relation guidance
    assert res.lift[2, text] < 0 and res.lift[3, text] < 0  # text is weakest there
    assert all(name != 'B' or abs(lift) < 2e-3 for name, lift, _ in res.top['text'])
    assert res.count[4] == 0 and all(name != 'E' for v in res.top.values() for name, *_ in v)


def test_missing_modalities_get_zero_weight():
    model, _ = make_model()
    with torch.no_grad():
        model.fusion.zeta.copy_(torch.tensor([-3.0, -1.0, 0.0, 2.0, 0.0]))
    no_text = (~TEXT_MASK).nonzero().view(-1)  # 0, 3, 6, ...
    nothing = (~TEXT_MASK & ~NUMERIC_MASK).nonzero().view(-1)  # 3, 9, 15, 21
    g = torch.Generator().manual_seed(0)

    def pick(pool, n):
        return pool[torch.randint(0, pool.numel(), (n, ), generator=g)]

    h = torch.cat([pick(no_text, 8), pick(nothing, 5), torch.arange(N)])
    t = torch.cat([pick(no_text, 8), pick(nothing, 5), torch.arange(N).flip(0)])
    r = torch.tensor([0] * 8 + [1] * 5 + [2] * N)
    res = relation_modality_weights(model, triples=(h, r, t))

    text, numeric = res.modalities.index('text'), res.modalities.index('numeric')
    assert res.weights[0, text] == 0 and res.neutral[0, text] == 0
    assert res.lift[0, text] == 0
    assert torch.equal(res.weights[1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(res.neutral[1], torch.tensor([1.0, 0.0, 0.0]))
    # relation 2 visits every entity twice: its text weight is at most the presence rate
    assert 0 < res.weights[2, text] <= TEXT_MASK.float().mean() + 1e-6
    assert 0 < res.weights[2, numeric] <= NUMERIC_MASK.float().mean() + 1e-6
    assert all(name not in ('r0', 'r1') for name, *_ in res.top['text'])
    assert torch.allclose(res.weights[:3].sum(-1), torch.ones(3), atol=1e-5)


def test_plot_and_to_dict(tmp_path):
    model, _ = make_model()
    with torch.no_grad():
        model.fusion.zeta.normal_(0, 2)
    h, r, t = random_triples(30, [0, 1, 2, 3])
    res = relation_modality_weights(model, triples=(h, r, t), top_k=2)

    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert d['weights'][4] == [None, None, None] and d['count'][4] == 0
    assert d['modalities'] == ['structure', 'text', 'numeric']
    assert d['temperature'] == pytest.approx(res.temperature.tolist())
    for m, entries in res.top.items():
        assert [(e['relation'], e['count']) for e in d['top'][m]] == [
            (name, count) for name, _, count in entries]

    pytest.importorskip('matplotlib')  # an optional extra ([plot], included in [test])
    path = tmp_path / 'case_study.png'
    fig = res.plot(str(path))
    from matplotlib.figure import Figure
    assert isinstance(fig, Figure) and len(fig.axes) >= 2
    data = path.read_bytes()
    assert data.startswith(b'\x89PNG') and len(data) > 1000
    assert isinstance(res.plot(), Figure)  # without a path: nothing written

    empty = relation_modality_weights(model, triples=(h[:0], r[:0], t[:0]))
    assert (empty.count == 0).all() and empty.weights.isnan().all()
    assert all(v == [] for v in empty.top.values())
    empty.plot(str(tmp_path / 'empty.png'))
    assert (tmp_path / 'empty.png').stat().st_size > 0


def test_plot_without_matplotlib(monkeypatch):
    model, _ = make_model()
    res = relation_modality_weights(model, triples=random_triples(5, [0]))
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
    with pytest.raises(ImportError, match='pip install matplotlib'):
        res.plot()


def test_without_relation_temperature():
    model, _ = make_model(relation_temperature=False)
    assert model.fusion.zeta is None
    h, r, t = random_triples(30, [0, 1, 2, 3, 4])
    res = relation_modality_weights(model, triples=(h, r, t))
    assert torch.equal(res.temperature, torch.ones(R))
    assert torch.allclose(res.lift, torch.zeros(R, 3), atol=1e-7)
    assert all(v == [] for v in res.top.values())
    ref_w, _ = naive_reference(model, h, r, t, R)
    assert torch.allclose(res.weights.double(), ref_w, atol=1e-5, equal_nan=True)


def test_batching_modes_and_model_untouched():
    model, _ = make_model()
    with torch.no_grad():
        model.fusion.zeta.normal_(0, 2)
    zeta = model.fusion.zeta.detach().clone()
    model.train()
    model.representation.projection.eval()  # mixed modes are restored module by module
    triples = random_triples(50, list(range(R)))
    a = relation_modality_weights(model, triples=triples, batch_size=1)
    b = relation_modality_weights(model, triples=triples)
    assert torch.allclose(a.weights, b.weights, atol=1e-6, equal_nan=True)
    assert torch.allclose(a.neutral, b.neutral, atol=1e-6, equal_nan=True)
    assert torch.equal(model.fusion.zeta.detach(), zeta)
    assert model.training and model.fusion.training and not model.representation.projection.training
    assert not b.weights.requires_grad and not b.lift.requires_grad
    assert model.fusion.zeta.grad is None


def test_duck_typed_model():
    model, _ = make_model()
    with torch.no_grad():
        model.fusion.zeta.normal_(0, 2)
    duck = SimpleNamespace(modalities=model.modalities, modality_stack=model.modality_stack,
                           fusion=model.fusion)  # no num_relations: taken from zeta
    triples = random_triples(20, [0, 2, 4])
    a = relation_modality_weights(duck, triples=triples)
    b = relation_modality_weights(model, triples=triples)
    assert torch.allclose(a.weights, b.weights, equal_nan=True)
    assert torch.allclose(a.lift, b.lift, equal_nan=True)


def test_errors():
    model, feats = make_model()
    h, r, t = random_triples(6, [0, 1])
    with pytest.raises(TypeError, match='modality_stack'):
        relation_modality_weights(torch.nn.Linear(2, 2), triples=(h, r, t))
    no_temp = SimpleNamespace(modalities=['text'], modality_stack=lambda i: None,
                              fusion=SimpleNamespace(weights=lambda *a: None),
                              num_relations=R)
    with pytest.raises(TypeError, match='temperature'):
        relation_modality_weights(no_temp, triples=(h, r, t))
    with pytest.raises(ValueError, match='data'):
        relation_modality_weights(model)
    with pytest.raises(ValueError, match=r'relation ids must lie in \[0, 5\)'):
        relation_modality_weights(model, triples=(h, torch.full_like(r, R), t))
    with pytest.raises(ValueError, match=r'relation ids must lie'):
        relation_modality_weights(model, triples=(h, torch.full_like(r, -1), t))
    with pytest.raises(ValueError, match='same length'):
        relation_modality_weights(model, triples=(h, r[:-1], t))
    with pytest.raises(ValueError, match='tail ids'):
        relation_modality_weights(model, triples=(h, r, torch.full_like(t, N)))
    with pytest.raises(ValueError, match='integers'):
        relation_modality_weights(model, triples=(h.float(), r, t))
    with pytest.raises(ValueError, match='tuple'):
        relation_modality_weights(model, triples=torch.stack([h, r, t], 1))
    with pytest.raises(ValueError, match='top_k'):
        relation_modality_weights(model, triples=(h, r, t), top_k=-1)
    with pytest.raises(ValueError, match='relation names'):
        relation_modality_weights(model, triples=(h, r, t), relation_names=['a'])
    data = build_mmkg(N, R + 1, {'train': torch.stack([h, r, t], 1)}, feats)
    with pytest.raises(ValueError, match='graph has 6'):
        relation_modality_weights(model, data)
