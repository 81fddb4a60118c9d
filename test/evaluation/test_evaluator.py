import json
import math

import pytest
import torch

from torch_mmkg.data import KnownTriples, build_mmkg
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.evaluation import (CATEGORIES, COMPLETENESS, RANK_TYPES, RankingEvaluator,
                                   RankingResult, entity_completeness)
from torch_mmkg.nn import DistMult
from torch_mmkg.testing import withCUDA

N, R = 15, 3
KS = (1, 3, 10)


class TableModel(torch.nn.Module):
    r"""A fake model whose score of :math:`(h, r, t)` is :obj:`table[h, r, t]`."""
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.num_nodes, self.num_relations = table.size(0), table.size(1)
        self.prepared = 0
        self.modes = set()

    def prepare_scoring(self):
        self.prepared += 1
        return self.table

    def score_tails(self, head_index, rel_type, cache=None):
        assert cache is self.table
        self.modes.add(self.training)
        return cache[head_index, rel_type].clone()

    def score_heads(self, rel_type, tail_index, cache=None):
        assert cache is self.table
        self.modes.add(self.training)
        return cache[:, rel_type, tail_index].t().clone()


def make_kg(seed=0, num_known=120, num_test=25):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(N * R * N, generator=gen)[:num_known]
    h, r, t = keys // (R * N), keys // N % R, keys % N
    known = list(zip(h.tolist(), r.tolist(), t.tolist()))
    test = known[:num_test] + known[:2]  # duplicate test rows are separate queries
    test.append((0, R - 1, N - 1) if (0, R - 1, N - 1) not in known else known[3])
    return known, test


def integer_table(seed=1, high=4):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (N, R, N), generator=gen).float()  # many ties


# Brute force ##################################################################################


def brute_ranks(score, test, num_nodes, known=None, exclude_query=False):
    r"""``(side, h, r, t, optimistic, pessimistic)`` of every query, with plain loops; with
    :obj:`exclude_query` the query entity is no candidate (unless it is the answer)."""
    out = []
    for side in (0, 1):
        for h, r, t in test:
            y = h if side == 0 else t
            q = t if side == 0 else h
            true = score(h, r, t)
            gt = ge = 0
            for e in range(num_nodes):
                if e == y or (exclude_query and e == q):
                    continue
                cand = (e, r, t) if side == 0 else (h, r, e)
                if known is not None and cand in known:
                    continue
                s = score(*cand)
                gt += s > true
                ge += s >= true
            out.append((side, h, r, t, 1 + gt, 1 + ge))
    return out


def pick(ranks, rank):
    if rank == 'optimistic':
        return [q[4] for q in ranks]
    if rank == 'pessimistic':
        return [q[5] for q in ranks]
    return [(q[4] + q[5]) / 2 for q in ranks]


def brute_metrics(ranks, ks=KS):
    Q = len(ranks)
    if Q == 0:
        return {'count': 0}
    out = {'count': Q, 'mr': sum(ranks) / Q, 'mrr': sum(1 / x for x in ranks) / Q}
    out.update({f'hits@{k}': sum(x <= k for x in ranks) / Q for k in ks})
    return out


def assert_metrics(got, ref):
    assert got['count'] == ref['count']
    if ref['count'] == 0:
        assert all(math.isnan(v) for k, v in got.items() if k != 'count')
        return
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-15), k


def select(ranks, side='both', where=lambda q: True):
    sides = {'both': (0, 1), 'head': (0, ), 'tail': (1, )}[side]
    return [q for q in ranks if q[0] in sides and where(q)]


def result_rows(res: RankingResult):
    return sorted(zip(res.side.tolist(), res.head.tolist(), res.rel.tolist(),
                      res.tail.tolist(), res.optimistic.tolist(), res.pessimistic.tolist()))


# RankingEvaluator against the brute force ######################################################


@pytest.mark.parametrize('batch_size', [1, 3, 1000])
@pytest.mark.parametrize('filtered', [False, True])
def test_evaluator_matches_brute_force(batch_size, filtered):
    known, test = make_kg()
    table = integer_table()
    model = TableModel(table)
    known_index = KnownTriples(*torch.tensor(known).T, N, R) if filtered else None
    h, r, t = torch.tensor(test).T
    res = RankingEvaluator(known_index, batch_size=batch_size).evaluate(model, h, r, t)
    assert model.prepared == 1 and model.modes == {False} and model.training

    ref = brute_ranks(lambda a, b, c: float(table[a, b, c]), test, N,
                      set(known) if filtered else None)
    assert result_rows(res) == sorted(ref)
    assert sum(q[4] != q[5] for q in ref) > len(ref) // 2  # ties are the rule
    assert res.side.numel() == 2 * len(test)
    assert res.ks == KS

    for rank in RANK_TYPES:
        got = res.ranks(rank)
        assert sorted(got.tolist()) == sorted(pick(ref, rank))
        for side in ('both', 'head', 'tail'):
            assert_metrics(res.metrics(rank, side), brute_metrics(pick(select(ref, side), rank)))
        summary = res.summary(rank)
        assert set(summary) == {'both', 'head', 'tail'}
        assert_metrics(summary['tail'], brute_metrics(pick(select(ref, 'tail'), rank)))


@pytest.mark.parametrize('filtered', [False, True])
def test_evaluator_excludes_the_query_entity(filtered):
    known, test = make_kg()
    # self-loops: the query entity is the answer and stays a candidate; and queries whose
    # query entity outscores the answer (so that leaving it out changes the rank)
    test += [(4, 0, 4), (7, 2, 7), (1, 1, 5), (6, 0, 2)]
    known = known + [x for x in test if x not in known]
    table = integer_table(seed=3)
    for h, r, t in test[-2:]:
        table[h, r, h] = table[t, r, t] = 9.0  # the query entity beats every answer
    known_index = KnownTriples(*torch.tensor(known).T, N, R) if filtered else None
    h, r, t = torch.tensor(test).T
    res = RankingEvaluator(known_index, batch_size=4, exclude_query_entity=True).evaluate(
        TableModel(table), h, r, t)
    ref = brute_ranks(lambda a, b, c: float(table[a, b, c]), test, N,
                      set(known) if filtered else None, exclude_query=True)
    assert result_rows(res) == sorted(ref)
    kept = RankingEvaluator(known_index, batch_size=4).evaluate(TableModel(table), h, r, t)
    assert result_rows(kept) == sorted(brute_ranks(lambda a, b, c: float(table[a, b, c]),
                                                   test, N, set(known) if filtered else None))
    assert bool((res.optimistic <= kept.optimistic).all())
    assert bool((res.optimistic < kept.optimistic).any())
    # the self-loop answers keep their rank: their query entity is the answer
    loops = (res.head == res.tail)
    assert bool(loops.any()) and torch.equal(res.pessimistic[loops], kept.pessimistic[loops])
    # the protocol says so, in the report too
    assert res.protocol['query_entity_candidate'] is False
    assert kept.protocol['query_entity_candidate'] is True
    assert res.protocol['filtered'] is filtered and 'realistic' in res.protocol['ties']
    assert res.to_dict()['protocol'] == json.loads(json.dumps(res.protocol))


def test_evaluator_filter_changes_ranks():
    known, test = make_kg()
    table = integer_table()
    h, r, t = torch.tensor(test).T
    raw = RankingEvaluator().evaluate(TableModel(table), h, r, t)
    flt = RankingEvaluator(KnownTriples(*torch.tensor(known).T, N, R)).evaluate(
        TableModel(table), h, r, t)
    assert bool((flt.pessimistic <= raw.pessimistic).all())
    assert bool((flt.pessimistic < raw.pessimistic).any())


@pytest.mark.parametrize('sides', [('head', ), ('tail', )])
def test_evaluator_one_side(sides):
    known, test = make_kg()
    table = integer_table()
    h, r, t = torch.tensor(test).T
    res = RankingEvaluator(KnownTriples(*torch.tensor(known).T, N, R), batch_size=4,
                           sides=sides, ks=(2, 5)).evaluate(TableModel(table), h, r, t)
    s = 0 if sides == ('head', ) else 1
    ref = [q for q in brute_ranks(lambda a, b, c: float(table[a, b, c]), test, N, set(known))
           if q[0] == s]
    assert result_rows(res) == sorted(ref)
    assert_metrics(res.metrics('realistic', sides[0]),
                   brute_metrics(pick(ref, 'realistic'), (2, 5)))
    other = 'tail' if sides == ('head', ) else 'head'
    assert_metrics(res.metrics('realistic', other), {'count': 0})


@withCUDA
def test_evaluator_device(device):
    known, test = make_kg(seed=3)
    table = integer_table(seed=4)
    model = TableModel(table).to(device)
    h, r, t = torch.tensor(test).T
    res = RankingEvaluator(KnownTriples(*torch.tensor(known).T, N, R), batch_size=5).evaluate(
        model, h, r, t)
    assert res.optimistic.device.type == 'cpu'
    ref = brute_ranks(lambda a, b, c: float(table[a, b, c]), test, N, set(known))
    assert result_rows(res) == sorted(ref)
    if device.type == 'cuda':
        assert res.peak_memory is not None and res.peak_memory > 0


def test_evaluator_errors():
    known, test = make_kg()
    h, r, t = torch.tensor(test).T
    model = TableModel(integer_table())
    nan_table = integer_table()
    nan_table[h[4], r[4], 7] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        RankingEvaluator().evaluate(TableModel(nan_table), h, r, t)
    kh, kr, kt = torch.tensor(known).T
    with pytest.raises(ValueError, match=f'{N + 1} entities'):
        RankingEvaluator(KnownTriples(kh, kr, kt, N + 1, R)).evaluate(model, h, r, t)
    with pytest.raises(ValueError, match=f'{R + 1} relations'):
        RankingEvaluator(KnownTriples(kh, kr, kt, N, R + 1)).evaluate(model, h, r, t)
    bad = h.clone()
    bad[2] = N
    with pytest.raises(ValueError, match=rf'head_index holds entity id {N} at position 2'):
        RankingEvaluator().evaluate(model, bad, r, t)
    bad = r.clone()
    bad[0] = -1
    with pytest.raises(ValueError, match=r'rel_type holds relation id -1 at position 0'):
        RankingEvaluator().evaluate(model, h, bad, t)
    with pytest.raises(ValueError, match=r'tail_index holds entity id .* at position 0'):
        RankingEvaluator().evaluate(model, h, r, t + N)
    with pytest.raises(ValueError, match=r'RankingEvaluator.evaluate: tail_index must be an '
                                         r'integer tensor'):
        RankingEvaluator().evaluate(model, h, r, t.float() + 0.5)
    with pytest.raises(ValueError, match='sides'):
        RankingEvaluator(sides=('both', ))
    with pytest.raises(ValueError, match='batch_size'):
        RankingEvaluator(batch_size=0)
    res = RankingEvaluator().evaluate(model, h, r, t)
    with pytest.raises(ValueError, match='rank'):
        res.ranks('median')
    with pytest.raises(ValueError, match='side'):
        res.metrics('realistic', 'left')


# KGEModel.test ################################################################################


def integer_distmult(inverse_relations, seed=5):
    model = DistMult(N, R, 3, inverse_relations=inverse_relations)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.node_emb.weight.copy_(torch.randint(-1, 2, model.node_emb.weight.shape,
                                                  generator=gen))
        model.rel_emb.weight.copy_(torch.randint(-1, 2, model.rel_emb.weight.shape,
                                                 generator=gen))
    E, W = model.node_emb.weight.tolist(), model.rel_emb.weight.tolist()

    def score(h, r, t, side):
        if inverse_relations and side == 0:  # (?, r, t) is (t, r + R, ?)
            h, r, t = t, r + R, h
        return sum(a * b * c for a, b, c in zip(E[h], W[r], E[t]))
    return model, score


@pytest.mark.parametrize('inverse_relations', [False, True])
def test_kge_model_test(inverse_relations):
    known, test = make_kg(seed=6)
    model, score = integer_distmult(inverse_relations)
    h, r, t = torch.tensor(test).T
    known_index = KnownTriples(*torch.tensor(known).T, N, R)
    ref = {}
    for flt in (None, set(known)):
        rows = []
        for side in (0, 1):
            rows += [q for q in brute_ranks(lambda a, b, c: score(a, b, c, side), test, N, flt)
                     if q[0] == side]
        ref[flt is not None] = rows
    assert sum(q[4] != q[5] for q in ref[True]) > len(test) // 2
    model.train()
    for filtered in (False, True):
        for side in ('both', 'head', 'tail'):
            for rank in RANK_TYPES:
                for batch_size in ((1, 1000) if rank == 'realistic' else (7, )):
                    out = model.test(h, r, t, batch_size=batch_size, k=3, log=False,
                                     known=known_index if filtered else None, side=side,
                                     rank=rank)
                    m = brute_metrics(pick(select(ref[filtered], side), rank), ks=(3, ))
                    assert isinstance(out, tuple) and len(out) == 3
                    assert out == pytest.approx((m['mr'], m['mrr'], m['hits@3']), rel=1e-12)
    assert model.training
    # The default is the realistic rank, both sides, Hits@10.
    m = brute_metrics(pick(ref[True], 'realistic'), ks=(10, ))
    assert model.test(h, r, t, log=False, known=known_index) == pytest.approx(
        (m['mr'], m['mrr'], m['hits@10']), rel=1e-12)


# Breakdowns ###################################################################################


def evaluated(seed=7):
    known, test = make_kg(seed=seed, num_known=150, num_test=60)
    table = integer_table(seed=seed)
    h, r, t = torch.tensor(test).T
    res = RankingEvaluator(KnownTriples(*torch.tensor(known).T, N, R), batch_size=16).evaluate(
        TableModel(table), h, r, t)
    ref = brute_ranks(lambda a, b, c: float(table[a, b, c]), test, N, set(known))
    return res, ref


def test_by_relation():
    res, ref = evaluated()
    for rank in RANK_TYPES:
        for side in ('both', 'head', 'tail'):
            got = res.by_relation(rank, side)
            assert sorted(got) == sorted({q[2] for q in ref})
            for rel, m in got.items():
                assert_metrics(m, brute_metrics(pick(select(ref, side, lambda q: q[2] == rel),
                                                     rank)))


def test_by_category():
    res, ref = evaluated()
    categories = torch.tensor([3, 0, 3])  # 1-N and N-1 absent: left out
    for rank in RANK_TYPES:
        got = res.by_category(categories, rank)
        assert list(got) == ['1-1', 'N-N']
        for name, per_side in got.items():
            c = CATEGORIES.index(name)
            assert set(per_side) == {'both', 'head', 'tail'}
            for side, m in per_side.items():
                sub = select(ref, side, lambda q: int(categories[q[2]]) == c)
                assert_metrics(m, brute_metrics(pick(sub, rank)))
    assert list(res.by_category(torch.tensor([1, 2, 1]))) == ['1-N', 'N-1']


def test_completeness_groups_hand_made():
    complete = torch.tensor([True, False, True, False])
    head = torch.tensor([0, 0, 1, 3, 2, 1])
    tail = torch.tensor([2, 1, 3, 2, 0, 1])
    z = torch.zeros(6, dtype=torch.long)
    res = RankingResult(head, z, tail, z, z + 1, z + 1)
    assert res.completeness(complete).tolist() == [0, 1, 2, 1, 0, 2]
    assert res.completeness(complete.long()).tolist() == [0, 1, 2, 1, 0, 2]
    assert COMPLETENESS == ['both_complete', 'one_missing', 'both_missing']
    got = res.by_completeness(torch.tensor([True, True, True, False]))
    assert list(got) == ['both_complete', 'one_missing']
    assert got['both_complete']['count'] == 4 and got['one_missing']['count'] == 2


def test_by_completeness():
    res, ref = evaluated()
    gen = torch.Generator().manual_seed(8)
    complete = torch.rand(N, generator=gen) < 0.6
    c = complete.tolist()
    for rank in RANK_TYPES:
        got = res.by_completeness(complete, rank)
        groups = {(not c[q[1]]) + (not c[q[3]]) for q in ref}
        assert list(got) == [COMPLETENESS[g] for g in sorted(groups)]
        for name, m in got.items():
            g = COMPLETENESS.index(name)
            sub = [q for q in ref if (not c[q[1]]) + (not c[q[3]]) == g]
            assert_metrics(m, brute_metrics(pick(sub, rank)))


def test_to_dict():
    res, ref = evaluated()
    categories = torch.tensor([0, 1, 3])
    complete = torch.arange(N) % 3 != 0
    out = res.to_dict(categories, complete, per_relation=True)
    out = json.loads(json.dumps(out))  # JSON-serialisable
    assert out['num_queries'] == len(ref)
    assert out['peak_memory'] is None and out['seconds'] >= 0
    for rank in RANK_TYPES:
        for side in ('both', 'head', 'tail'):
            assert_metrics(out[rank][side], brute_metrics(pick(select(ref, side), rank)))
    assert out['by_category'] == json.loads(json.dumps(res.by_category(categories)))
    assert out['by_completeness'] == json.loads(json.dumps(res.by_completeness(complete)))
    assert set(out['by_relation']) == {str(q[2]) for q in ref}
    assert_metrics(out['by_relation']['1'],
                   brute_metrics(pick(select(ref, 'both', lambda q: q[2] == 1), 'realistic')))
    plain = res.to_dict()
    assert not {'by_category', 'by_completeness', 'by_relation'} & set(plain)


# entity_completeness ##########################################################################


def test_entity_completeness_fake():
    ds = FakeMMKGDataset(num_entities=60, num_relations=3, num_triples=200, missing_rate=0.3)
    data = ds[0]
    out = entity_completeness(data)
    img, txt = data['entity'].mask_image, data['entity'].mask_text
    assert out.dtype == torch.bool and out.shape == (60, )
    assert out.tolist() == [a and b for a, b in zip(img.tolist(), txt.tolist())]
    assert 0 < int(out.sum()) < 60


def test_entity_completeness_build_mmkg():
    x = torch.ones(5, 2)
    x[1] = 0
    y = torch.ones(5, 3)
    y[3] = 0
    triples = {'train': torch.tensor([[0, 0, 1], [2, 0, 3]]), 'test': torch.tensor([[4, 0, 0]])}
    data = build_mmkg(5, 1, triples, {'image': x, 'text': y})
    assert entity_completeness(data).tolist() == [True, False, True, False, True]
    masks = {'image': torch.tensor([True, False, True, True, True])}
    data = build_mmkg(5, 1, triples, {'image': x}, masks)
    assert entity_completeness(data).tolist() == [True, False, True, True, True]
    data = build_mmkg(5, 1, triples)
    assert entity_completeness(data).tolist() == [True] * 5
