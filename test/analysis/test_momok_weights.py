import math

import pytest
import torch

from torch_mmkg.analysis import expert_weights, scorer_comparison
from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import MoMoK, TuckER


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def setup():
    data = FakeMMKGDataset(num_entities=40, num_relations=3, num_clusters=3, num_triples=200,
                           modalities={'image': 5, 'text': 4}, seed=3)[0]
    torch.manual_seed(0)
    model = MoMoK.from_data(data, 8).eval()
    with torch.no_grad():
        for ex in model.experts.values():
            ex.w_gate.normal_()
        model.rel_temperature.normal_()
    return data, model


def test_expert_weights_are_per_relation_means(setup):
    data, model = setup
    h, r, t = get_triples(data, 'train')
    res = expert_weights(model, data)
    R = data.num_relations
    assert res.relation_names[R:] == [f'{n}^-1' for n in res.relation_names[:R]]
    assert torch.equal(res.count, torch.bincount(torch.cat([r, r + R]), minlength=2 * R))
    assert torch.allclose(res.temperature, torch.sigmoid(model.rel_temperature).float())
    e, q = torch.cat([h, t]), torch.cat([r, r + R])
    with torch.no_grad():
        stack, _, gates, mask = model.modality_embeddings(e, q)
        alpha = model.joint(stack, mask)[1].mean(-2)
    s = model.slots.index('text')
    for rel in range(2 * R):
        sel = q == rel
        has = sel & mask[:, s]
        if has.any():
            assert torch.allclose(res.gates[rel, s], gates[has, s].mean(0).float(), atol=1e-6)
        if sel.any():
            assert torch.allclose(res.joint[rel], alpha[sel].mean(0).float(), atol=1e-6)
            assert res.dominant_expert()[rel, s] == res.gates[rel, s].argmax()
    assert set(res.to_dict()) >= {'gates', 'joint', 'count', 'temperature'}


def test_scorer_comparison_matches_separate_evaluations(setup):
    data, model = setup
    res = scorer_comparison(model, data, top_k=5)
    assert res.scorers == ['structure', 'image', 'text', 'joint', 'ensemble']
    known = KnownTriples.from_data(data, 'all')
    test = get_triples(data, 'test')
    _, mrr, _ = model.test(*test, known=known, log=False)
    assert math.isclose(res.overall['ensemble']['mrr'], mrr, rel_tol=1e-6)
    with model.use_scorers(['text']):
        text = RankingEvaluator(known).evaluate(model, *test)
    assert math.isclose(res.overall['text']['mrr'], text.metrics()['mrr'], rel_tol=1e-6)
    for rel, met in text.by_relation().items():
        assert math.isclose(float(res.mrr[rel, 2]), met['mrr'], rel_tol=1e-5)
    # each relation is listed under the single scorer with the highest MRR
    single = res.mrr[:, :4]
    for scorer, rows in res.best.items():
        for name, margin, count in rows:
            rel = res.relation_names.index(name)
            best = single[rel].nan_to_num(-1).argmax()
            assert res.scorers[int(best)] == scorer and margin > 0
            assert count == int((test[1] == rel).sum())
    assert sum(len(v) for v in res.best.values()) >= 1
    assert 'ensemble' in res.to_dict()['overall']


def test_only_momok():
    with pytest.raises(TypeError, match='MoMoK'):
        expert_weights(TuckER(5, 2, 4), triples=(torch.tensor([0]),) * 3)
