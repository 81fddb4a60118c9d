import pytest
import torch

from torch_mmkg.evaluation import RANK_TYPES, filtered_ranks, rank_metrics, realistic


def brute_force(scores, target, filtered):
    r"""Optimistic and pessimistic ranks with plain loops; :obj:`filtered[b]` is the set of
    entities removed from query :obj:`b` (the target is never removed)."""
    opt, pess = [], []
    for b, row in enumerate(scores.tolist()):
        y = int(target[b])
        gt = ge = 0
        for e, s in enumerate(row):
            if e == y or e in filtered[b]:
                continue
            gt += s > row[y]
            ge += s >= row[y]
        opt.append(1 + gt)
        pess.append(1 + ge)
    return opt, pess


@pytest.mark.parametrize('with_filter', [False, True])
def test_filtered_ranks_ties(with_filter):
    gen = torch.Generator().manual_seed(0)
    B, N = 40, 17
    scores = torch.randint(0, 4, (B, N), generator=gen).float()  # many ties
    target = torch.randint(0, N, (B, ), generator=gen)
    filtered = [set() for _ in range(B)]
    fq = fe = None
    if with_filter:
        fq = torch.randint(0, B, (150, ), generator=gen)
        fe = torch.randint(0, N, (150, ), generator=gen)
        fq, fe = torch.cat([fq, torch.arange(B)]), torch.cat([fe, target])  # target listed
        for q, e in zip(fq.tolist(), fe.tolist()):
            if e != int(target[q]):
                filtered[q].add(e)
    opt, pess = filtered_ranks(scores.clone(), target, fq, fe)
    ref_opt, ref_pess = brute_force(scores, target, filtered)
    assert opt.tolist() == ref_opt and pess.tolist() == ref_pess
    assert opt.dtype == pess.dtype == torch.long
    assert bool((opt <= pess).all())
    assert (opt != pess).any()  # ties matter
    real = realistic(opt, pess)
    assert real.dtype == torch.float64
    assert real.tolist() == [(a + b) / 2 for a, b in zip(ref_opt, ref_pess)]


def test_filtered_ranks_extremes():
    scores = torch.tensor([[1., 1., 1., 1.], [0., 5., 1., 2.], [9., 0., 0., 0.]])
    target = torch.tensor([2, 1, 1])
    opt, pess = filtered_ranks(scores.clone(), target)
    assert opt.tolist() == [1, 1, 2] and pess.tolist() == [4, 1, 4]
    # Filtering every other entity gives rank 1.
    fq = torch.tensor([2, 2, 2])
    fe = torch.tensor([0, 2, 3])
    opt, pess = filtered_ranks(scores.clone(), target, fq, fe)
    assert opt.tolist() == [1, 1, 1] and pess.tolist() == [4, 1, 1]
    # -inf/+inf scores compare like numbers.
    s = torch.tensor([[float('-inf'), float('inf'), 0.]])
    assert [x.tolist() for x in filtered_ranks(s, torch.tensor([0]))] == [[3], [3]]


def test_filtered_ranks_errors():
    scores = torch.zeros(3, 5)
    scores[1, 4] = float('nan')
    with pytest.raises(ValueError, match='NaN.*query 1'):
        filtered_ranks(scores, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='expected scores'):
        filtered_ranks(torch.zeros(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match='expected scores'):
        filtered_ranks(torch.zeros(3, 5), torch.zeros(4, dtype=torch.long))


def test_rank_metrics():
    ranks = [1, 2, 2.5, 3, 10, 11, 100]
    m = rank_metrics(torch.tensor(ranks), ks=(1, 3, 10))
    Q = len(ranks)
    assert m['count'] == Q
    assert m['mr'] == pytest.approx(sum(ranks) / Q, rel=1e-12)
    assert m['mrr'] == pytest.approx(sum(1 / x for x in ranks) / Q, rel=1e-12)
    assert m['hits@1'] == pytest.approx(1 / Q)
    assert m['hits@3'] == pytest.approx(4 / Q)
    assert m['hits@10'] == pytest.approx(5 / Q)
    assert set(m) == {'count', 'mr', 'mrr', 'hits@1', 'hits@3', 'hits@10'}
    empty = rank_metrics(torch.empty(0), ks=(5, ))
    assert empty['count'] == 0
    assert all(v != v for k, v in empty.items() if k != 'count')  # NaN
    assert set(empty) == {'count', 'mr', 'mrr', 'hits@5'}


def test_rank_types():
    assert RANK_TYPES == ('realistic', 'optimistic', 'pessimistic')
