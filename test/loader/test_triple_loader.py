from collections import Counter

import pytest
import torch

from torch_mmkg.data import KnownTriples
from torch_mmkg.loader import NegativeSampler, OneToNLoader, TripleLoader
from torch_mmkg.loader.triple_loader import OneToNBatch, TripleBatch
from torch_mmkg.testing import withCUDA

N, R, T = 20, 4, 103


def random_triples(seed=0, T=T, dup=True):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (T, ), generator=gen)
    r = torch.randint(0, R, (T, ), generator=gen)
    t = torch.randint(0, N, (T, ), generator=gen)
    if dup:  # duplicate rows are distinct examples of the TripleLoader
        h[-5:], r[-5:], t[-5:] = h[:5], r[:5], t[:5]
    return h, r, t


def rows(h, r, t):
    return Counter(zip(h.tolist(), r.tolist(), t.tolist()))


# TripleLoader #################################################################################


@pytest.mark.parametrize('shuffle', [False, True])
@pytest.mark.parametrize('batch_size', [1, 10, T, 500])
def test_triple_loader_covers_every_triple_once(shuffle, batch_size):
    h, r, t = random_triples()
    # Tag each row by its position to check "exactly once" despite duplicate triples.
    loader = TripleLoader(torch.arange(T), r, t, batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(1))
    assert len(loader) == -(-T // batch_size)
    for epoch in range(2):
        seen = []
        batches = list(loader)
        assert len(batches) == len(loader)
        for batch in batches:
            assert isinstance(batch, tuple) and len(batch) == 3
            idx, rb, tb = batch
            assert 1 <= idx.numel() <= batch_size
            assert torch.equal(rb, r[idx]) and torch.equal(tb, t[idx])
            seen += idx.tolist()
        assert sorted(seen) == list(range(T))
        if not shuffle:
            assert seen == list(range(T))
        elif batch_size < T:
            assert seen != list(range(T))


def test_triple_loader_reshuffles_each_epoch():
    h, r, t = random_triples()
    loader = TripleLoader(torch.arange(T), r, t, batch_size=T,
                          generator=torch.Generator().manual_seed(2))
    a, b = next(iter(loader))[0], next(iter(loader))[0]
    assert sorted(a.tolist()) == sorted(b.tolist()) == list(range(T))
    assert not torch.equal(a, b)


@pytest.mark.parametrize('shuffle', [False, True])
def test_triple_loader_drop_last(shuffle):
    h, r, t = random_triples()
    loader = TripleLoader(torch.arange(T), r, t, batch_size=10, shuffle=shuffle,
                          drop_last=True)
    assert len(loader) == T // 10
    batches = list(loader)
    assert len(batches) == T // 10
    seen = torch.cat([b[0] for b in batches])
    assert all(b[0].numel() == 10 for b in batches)
    assert seen.numel() == seen.unique().numel() == 10 * (T // 10)
    if not shuffle:
        assert seen.tolist() == list(range(100))
    # batch_size dividing T: nothing dropped.
    loader = TripleLoader(torch.arange(T), r, t, batch_size=T, shuffle=shuffle, drop_last=True)
    assert len(loader) == 1 and next(iter(loader))[0].numel() == T
    loader = TripleLoader(torch.arange(T), r, t, batch_size=T + 1, drop_last=True)
    assert len(loader) == 0 and list(loader) == []


@withCUDA
def test_triple_loader_with_sampler(device):
    h, r, t = (x.to(device) for x in random_triples())
    known = KnownTriples(h, r, t, N, R)
    sampler = NegativeSampler(N, 3, known=known,
                              generator=torch.Generator(device=device).manual_seed(3))
    loader = TripleLoader(h, r, t, batch_size=16, sampler=sampler,
                          generator=torch.Generator(device=device).manual_seed(4))
    total = Counter()
    for batch in loader:
        assert isinstance(batch, TripleBatch)
        B = batch.head.numel()
        assert batch.negatives.index.shape == (B, 3)
        assert batch.negatives.corrupt_head.shape == (B, )
        assert batch.head.device.type == device.type
        assert batch.negatives.index.device.type == device.type
        neg = batch.negatives
        nh = torch.where(neg.corrupt_head[:, None], neg.index, batch.head[:, None])
        nt = torch.where(neg.corrupt_head[:, None], batch.tail[:, None], neg.index)
        assert not known.contains(nh, batch.rel[:, None], nt).any()
        total += rows(batch.head, batch.rel, batch.tail)
    assert total == rows(h, r, t)


def test_triple_loader_reproducible():
    h, r, t = random_triples()

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        loader = TripleLoader(h, r, t, batch_size=16, sampler=NegativeSampler(N, 2, generator=gen),
                              generator=gen)
        return [torch.cat([b.head, b.rel, b.tail, b.negatives.index.view(-1)]) for b in loader]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize('shuffle', [False, True])
def test_triple_loader_with_replacement(shuffle):
    # OpenKE's batches: each epoch draws T positions uniformly with replacement, whatever
    # shuffle says; seeded by the loader's generator.
    h, r, t = random_triples()
    loader = TripleLoader(torch.arange(T), r, t, batch_size=10, shuffle=shuffle,
                          replacement=True, generator=torch.Generator().manual_seed(7))
    assert len(loader) == -(-T // 10)
    counts, distinct, epochs = Counter(), [], 300
    for _ in range(epochs):
        batches = list(loader)
        assert len(batches) == len(loader)
        idx = torch.cat([b[0] for b in batches])
        assert idx.numel() == T and all(b[0].numel() <= 10 for b in batches)
        assert all(torch.equal(b[1], r[b[0]]) and torch.equal(b[2], t[b[0]]) for b in batches)
        counts.update(idx.tolist())
        distinct.append(idx.unique().numel())
    # With replacement an epoch repeats rows and misses others: T(1 - (1 - 1/T)^T) ~ 0.63 T
    # distinct rows on average (a permutation has all T); over 300 epochs the mean is within
    # 0.01 T of it (its standard deviation is ~0.3 distinct rows).
    expected = T * (1 - (1 - 1 / T)**T)
    assert max(distinct) < T and abs(sum(distinct) / epochs - expected) < 0.01 * T
    # Uniform over the rows: chi-square below its Wilson-Hilferty quantile at p ~ 1e-6.
    df, mean = T - 1, epochs
    stat = sum((counts[i] - mean)**2 / mean for i in range(T))
    assert set(counts) == set(range(T))
    assert stat < df * (1 - 2 / (9 * df) + 4.75 * (2 / (9 * df))**0.5)**3, stat
    # Reproducible by the generator, and drop_last still applies.
    again = TripleLoader(torch.arange(T), r, t, batch_size=10, replacement=True,
                         generator=torch.Generator().manual_seed(7))
    first = TripleLoader(torch.arange(T), r, t, batch_size=10, replacement=True,
                         generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, first))
    dropped = TripleLoader(torch.arange(T), r, t, batch_size=10, replacement=True,
                           drop_last=True)
    assert [b[0].numel() for b in dropped] == [10] * (T // 10)


def test_one_to_n_loader_with_replacement():
    h, r, t = random_triples()
    loader = OneToNLoader(h, r, t, N, R, batch_size=8, replacement=True,
                          generator=torch.Generator().manual_seed(8))
    Q = loader.query_entity.numel()
    seen = [tuple(x) for b in loader for x in zip(b.entity.tolist(), b.rel.tolist())]
    assert len(seen) == Q and len(set(seen)) < Q  # repeats (P(none) ~ Q! / Q^Q)


def test_triple_loader_bad_input():
    h, r, t = random_triples()
    with pytest.raises(ValueError, match='equal length'):
        TripleLoader(h, r[:-1], t)
    with pytest.raises(ValueError, match='equal length'):
        TripleLoader(h.view(-1, 1), r.view(-1, 1), t.view(-1, 1))
    with pytest.raises(ValueError, match='batch_size'):
        TripleLoader(h, r, t, batch_size=0)


# OneToNLoader #################################################################################


def reconstruct(loader):
    r"""All (entity, rel, answer) rows of all batches, and the list of queries."""
    triples, queries = [], []
    for batch in loader:
        assert isinstance(batch, OneToNBatch)
        B = batch.entity.numel()
        assert batch.target.shape == (B, loader.num_nodes)
        assert batch.target.dtype == torch.float
        assert bool(((batch.target == 0) | (batch.target == 1)).all())
        assert bool((batch.target.sum(1) >= 1).all())  # every query has an answer
        for e, q, row in zip(batch.entity.tolist(), batch.rel.tolist(), batch.target):
            queries.append((e, q))
            triples += [(e, q, a) for a in row.nonzero().view(-1).tolist()]
    return triples, queries


@pytest.mark.parametrize('inverse', [True, False])
@pytest.mark.parametrize('batch_size,shuffle,drop_last', [
    (1, False, False), (7, True, False), (1000, True, False), (7, False, True)])
def test_one_to_n_loader(inverse, batch_size, shuffle, drop_last):
    h, r, t = random_triples(seed=7, T=300)
    h[:20], r[:20] = 3, 1  # one query with many answers
    loader = OneToNLoader(h, r, t, N, R, inverse_relations=inverse, batch_size=batch_size,
                          shuffle=shuffle, drop_last=drop_last,
                          generator=torch.Generator().manual_seed(8))
    expected = set(zip(h.tolist(), r.tolist(), t.tolist()))
    if inverse:
        expected |= {(c, b + R, a) for a, b, c in expected}
    answers = {}
    for a, b, c in expected:
        answers.setdefault((a, b), set()).add(c)

    triples, queries = reconstruct(loader)
    assert len(queries) == len(set(queries))  # queries are unique
    if drop_last:
        assert len(queries) == len(answers) // batch_size * batch_size
        assert set(queries) <= set(answers)
        # The kept queries carry exactly their known answers.
        assert set(triples) == {(a, b, c) for (a, b) in queries for c in answers[(a, b)]}
    else:
        assert len(loader) == -(-len(answers) // batch_size)
        assert set(queries) == set(answers)
        assert len(triples) == len(set(triples))
        assert set(triples) == expected
    rels = {q for _, q in queries}
    assert max(rels) < (2 * R if inverse else R)
    if inverse:
        assert any(q >= R for q in rels)


def test_one_to_n_loader_order_and_reshuffle():
    h, r, t = random_triples(seed=9)
    loader = OneToNLoader(h, r, t, N, R, batch_size=1000, shuffle=False)
    batch = next(iter(loader))
    key = batch.entity * 2 * R + batch.rel
    assert bool((key[1:] > key[:-1]).all())  # sorted unique queries without shuffling
    loader = OneToNLoader(h, r, t, N, R, batch_size=1000,
                          generator=torch.Generator().manual_seed(10))
    a, b = next(iter(loader)), next(iter(loader))
    assert not torch.equal(a.entity * 2 * R + a.rel, b.entity * 2 * R + b.rel)
    # Each row's target follows its query through the shuffle.
    ia = torch.argsort(a.entity * 2 * R + a.rel)
    ib = torch.argsort(b.entity * 2 * R + b.rel)
    assert torch.equal(a.target[ia], b.target[ib])


def test_one_to_n_loader_out_of_range():
    h, r, t = random_triples()
    bad = h.clone()
    bad[3] = N
    with pytest.raises(ValueError, match=r'head_index holds entity id 20 at position 3'):
        OneToNLoader(bad, r, t, N, R)
    bad = t.clone()
    bad[0] = -1
    with pytest.raises(ValueError, match=r'tail_index holds entity id -1 at position 0'):
        OneToNLoader(h, r, bad, N, R)
    bad = r.clone()
    bad[5] = R
    with pytest.raises(ValueError, match=r'rel_type holds relation id 4 at position 5'):
        OneToNLoader(h, bad, t, N, R)
    with pytest.raises(ValueError, match=r'head_index must be an integer tensor of ids'):
        OneToNLoader(h.float() + 0.5, r, t, N, R)
    with pytest.raises(ValueError, match=r'tail_index must be an integer tensor of ids, got a '
                                         r'torch.float32'):
        TripleLoader(h, r, t.float())
    with pytest.raises(ValueError, match='equal length'):
        OneToNLoader(h, r, t[:-1], N, R)
