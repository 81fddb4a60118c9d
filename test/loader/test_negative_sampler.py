import itertools
import math
from collections import Counter

import pytest
import torch

from torch_mmkg.data import KnownTriples
from torch_mmkg.loader import NegativeSampler, relation_head_probability
from torch_mmkg.testing import withCUDA


def chi2_critical(df: int, z: float = 4.75) -> float:
    r"""Wilson-Hilferty upper quantile of the chi-square distribution (z = 4.75: p ~ 1e-6),
    so that the seeded tests are not brittle across RNG implementations."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a))**3


def assert_uniform(counts: Counter, support, total: int):
    r"""Every entity of :obj:`support` is drawn, nothing else is, and the frequencies pass a
    chi-square test against the uniform distribution on :obj:`support`."""
    support = sorted(support)
    assert set(counts) == set(support), (sorted(counts), support)
    assert sum(counts.values()) == total
    if len(support) == 1:
        return
    expected = total / len(support)
    stat = sum((counts[e] - expected)**2 / expected for e in support)
    assert stat < chi2_critical(len(support) - 1), (stat, dict(counts))


def corrupted_entities(neg, head, tail):
    r"""Per positive: the side corrupted, the entity replaced, and the K entities drawn."""
    out = []
    for b in range(head.numel()):
        ch = bool(neg.corrupt_head[b])
        own = int(head[b]) if ch else int(tail[b])
        out.append((ch, own, neg.index[b].tolist()))
    return out


# Unfiltered ###################################################################################


def test_unfiltered_excludes_own_entity_and_is_uniform():
    N, B, K = 5, 6000, 4
    gen = torch.Generator().manual_seed(0)
    head = torch.randint(0, N, (B, ), generator=gen)
    tail = torch.randint(0, N, (B, ), generator=gen)
    rel = torch.zeros(B, dtype=torch.long)
    sampler = NegativeSampler(N, K, generator=torch.Generator().manual_seed(1))
    neg = sampler(head, rel, tail)
    assert neg.index.shape == (B, K) and neg.index.dtype == torch.long
    assert neg.corrupt_head.shape == (B, ) and neg.corrupt_head.dtype == torch.bool

    per_own = {e: Counter() for e in range(N)}
    for ch, own, drawn in corrupted_entities(neg, head, tail):
        assert own not in drawn
        per_own[own].update(drawn)
    for own, counts in per_own.items():
        # Uniform over the N - 1 other entities, whatever the replaced one.
        assert_uniform(counts, set(range(N)) - {own}, sum(counts.values()))

    # The side is a fair coin under strategy='uniform'.
    p = neg.corrupt_head.double().mean().item()
    assert abs(p - 0.5) < 5 * math.sqrt(0.25 / B)


def test_unfiltered_two_entities():
    # N = 2: the only negative is the other entity.
    head = torch.tensor([0, 1, 0, 1])
    tail = torch.tensor([1, 0, 0, 1])
    neg = NegativeSampler(2, 7)(head, torch.zeros(4, dtype=torch.long), tail)
    for ch, own, drawn in corrupted_entities(neg, head, tail):
        assert drawn == [1 - own] * 7


# Filtered #####################################################################################


def dense_kg(N=12, R=3, density=0.6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    all_triples = torch.tensor(list(itertools.product(range(N), range(R), range(N))))
    keep = torch.rand(all_triples.size(0), generator=gen) < density
    h, r, t = all_triples[keep].T
    # A few duplicates must not change anything.
    h, r, t = torch.cat([h, h[:10]]), torch.cat([r, r[:10]]), torch.cat([t, t[:10]])
    return h, r, t


def complements(h, r, t, N):
    known = set(zip(h.tolist(), r.tolist(), t.tolist()))
    tails = {}
    heads = {}
    for a, b, c in known:
        tails.setdefault((a, b), set()).add(c)
        heads.setdefault((b, c), set()).add(a)
    free_tails = lambda a, b: set(range(N)) - tails.get((a, b), set())  # noqa: E731
    free_heads = lambda b, c: set(range(N)) - heads.get((b, c), set())  # noqa: E731
    return known, free_tails, free_heads


@withCUDA
def test_filtered_never_known_and_uniform_on_complement(device):
    N, R, K = 12, 3, 8
    h, r, t = dense_kg(N, R)
    assert 0.5 < len(set(zip(h.tolist(), r.tolist(), t.tolist()))) / (N * N * R) < 0.7
    known = KnownTriples(h, r, t, N, R).to(device)
    known_set, free_tails, free_heads = complements(h, r, t, N)
    gen = torch.Generator(device=device).manual_seed(2)
    sampler = NegativeSampler(N, K, known=known, generator=gen)

    # Every possible (h, r, t) as a positive (known or not), repeated: every query of both
    # sides is exercised, including queries with no or few free entities.
    grid = torch.tensor(list(itertools.product(range(N), range(R), range(N))))
    reps = 25
    ph, pr, pt = grid.repeat(reps, 1).T.to(device)
    neg = sampler(ph, pr, pt)
    assert neg.index.device.type == device.type

    # No negative is a known triple (checked by the index itself and by the brute force).
    nh = torch.where(neg.corrupt_head[:, None], neg.index, ph[:, None])
    nt = torch.where(neg.corrupt_head[:, None], pt[:, None], neg.index)
    nr = pr[:, None].expand_as(nh)
    full = torch.tensor([
        len(free_heads(b, c) if bool(ch) else free_tails(a, b)) == 0
        for a, b, c, ch in zip(ph.tolist(), pr.tolist(), pt.tolist(), neg.corrupt_head.tolist())
    ], device=device)
    assert not known.contains(nh, nr, nt)[~full].any()

    per_query = {}
    for a, b, c, ch, drawn in zip(ph.tolist(), pr.tolist(), pt.tolist(),
                                  neg.corrupt_head.tolist(), neg.index.tolist()):
        q = ('head', b, c) if ch else ('tail', a, b)
        per_query.setdefault(q, Counter()).update(drawn)
        free = free_heads(b, c) if ch else free_tails(a, b)
        if free:
            assert set(drawn) <= free
            assert all((e, b, c) not in known_set if ch else (a, b, e) not in known_set
                       for e in drawn)

    # Uniform over the brute-force complement of each query (pooled over its positives).
    checked = 0
    for (side, x, y), counts in per_query.items():
        free = free_heads(x, y) if side == 'head' else free_tails(x, y)
        if free and sum(counts.values()) >= 40 * len(free):
            assert_uniform(counts, free, sum(counts.values()))
            checked += 1
    assert checked > 50


def test_filtered_large_ids():
    # Keys near the top of the key range (entity N-1, relation R-1) and sparse queries.
    N, R, T, K = 300, 7, 4000, 16
    gen = torch.Generator().manual_seed(3)
    h, r, t = (torch.randint(0, n, (T, ), generator=gen) for n in (N, R, N))
    h[:N], r[:N], t[:N] = N - 1, R - 1, torch.arange(N)  # (N-1, R-1, ?) is full
    h[N:N + 5], r[N:N + 5], t[N:N + 5] = 0, 0, torch.arange(5)
    known = KnownTriples(h, r, t, N, R)
    sampler = NegativeSampler(N, K, known=known, generator=torch.Generator().manual_seed(4))
    qh, qr, qt = h[N:], r[N:], t[N:]
    neg = sampler(qh, qr, qt)
    nh = torch.where(neg.corrupt_head[:, None], neg.index, qh[:, None])
    nt = torch.where(neg.corrupt_head[:, None], qt[:, None], neg.index)
    assert not known.contains(nh, qr[:, None], nt).any()
    assert int(neg.index.min()) >= 0 and int(neg.index.max()) < N


def test_filtered_full_query_falls_back():
    # (0, 0, ?) has every entity as a known tail and (?, 1, 2) every entity as a known head:
    # there is no true negative, so the draw falls back to the unfiltered one (uniform over
    # the entities other than the positive's own).
    N, K, B = 6, 5, 3000
    h = torch.cat([torch.zeros(N, dtype=torch.long), torch.arange(N)])
    r = torch.cat([torch.zeros(N, dtype=torch.long), torch.ones(N, dtype=torch.long)])
    t = torch.cat([torch.arange(N), torch.full((N, ), 2)])
    known = KnownTriples(h, r, t, N, 2)

    sampler = NegativeSampler(N, K, known=known, generator=torch.Generator().manual_seed(5))
    ph = torch.zeros(B, dtype=torch.long)
    pr = torch.zeros(B, dtype=torch.long)
    pt = torch.arange(B) % N
    neg = sampler(ph, pr, pt)
    tails = Counter()
    for b, (ch, own, drawn) in enumerate(corrupted_entities(neg, ph, pt)):
        assert own not in drawn
        if not ch and int(pt[b]) == 3:
            tails.update(drawn)
        if ch:  # (?, 0, t) has only head 0 known: exact filtering still applies
            assert 0 not in drawn
    assert_uniform(tails, set(range(N)) - {3}, sum(tails.values()))

    ph, pr, pt = torch.arange(B) % N, torch.ones(B, dtype=torch.long), torch.full((B, ), 2)
    neg = sampler(ph, pr, pt)
    heads = Counter()
    for b, (ch, own, drawn) in enumerate(corrupted_entities(neg, ph, pt)):
        if ch:
            assert own not in drawn
            if int(ph[b]) == 4:
                heads.update(drawn)
        else:  # (h, 1, ?) has only tail 2 known
            assert 2 not in drawn
    assert_uniform(heads, set(range(N)) - {4}, sum(heads.values()))


def test_filtered_known_mismatch_raises():
    known = KnownTriples(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), 5, 1)
    with pytest.raises(ValueError, match='entities'):
        NegativeSampler(6, known=known)


# Bernoulli ####################################################################################


def brute_force_head_probability(triples, R):
    triples = set(triples)
    out = []
    for rel in range(R):
        rows = [(h, t) for h, r, t in triples if r == rel]
        if not rows:
            out.append(0.5)
            continue
        heads = {h for h, _ in rows}
        tails = {t for _, t in rows}
        tph = len(rows) / len(heads)
        hpt = len(rows) / len(tails)
        out.append(tph / (tph + hpt))
    return out


def test_relation_head_probability_hand_made():
    triples = [
        # relation 0 is 1-N: head 0 has 4 tails, head 5 has 2: tph = 3, hpt = 1, p = 3/4.
        (0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (5, 0, 6), (5, 0, 7),
        # relation 1 is N-1: tph = 1, hpt = 2, p = 1/3.
        (1, 1, 0), (2, 1, 0), (3, 1, 4), (5, 1, 4),
        # relation 2 is N-N: 2 x 3 complete bipartite: tph = 3, hpt = 2, p = 3/5.
        *[(h, 2, t) for h in (0, 1) for t in (2, 3, 4)],
        # relation 3 has no triples: p = 1/2.
    ]
    dup = triples + triples[:3]  # duplicates are counted once
    h, r, t = torch.tensor(dup).T
    p = relation_head_probability(h, r, t, 4)
    assert p.tolist() == pytest.approx([3 / 4, 1 / 3, 3 / 5, 1 / 2])
    assert p.tolist() == pytest.approx(brute_force_head_probability(triples, 4))
    assert p[0] > 0.5 and p[1] < 0.5


def test_relation_head_probability_random():
    gen = torch.Generator().manual_seed(6)
    N, R, T = 30, 6, 500
    h = torch.randint(0, N, (T, ), generator=gen)
    r = torch.randint(0, R - 1, (T, ), generator=gen)  # relation R-1 stays empty
    t = torch.randint(0, N // 3, (T, ), generator=gen)
    p = relation_head_probability(h, r, t, R)
    ref = brute_force_head_probability(zip(h.tolist(), r.tolist(), t.tolist()), R)
    assert p.tolist() == pytest.approx(ref, rel=1e-6)


def test_bernoulli_corruption_frequency():
    triples = [(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (5, 0, 6), (5, 0, 7),
               (1, 1, 0), (2, 1, 0), (3, 1, 4), (5, 1, 4)]
    N, R = 8, 3
    h, r, t = torch.tensor(triples).T
    known = KnownTriples(h, r, t, N, R)
    sampler = NegativeSampler(N, 2, 'bernoulli', known=known,
                              generator=torch.Generator().manual_seed(7))
    p = sampler.head_probability
    assert p.tolist() == pytest.approx(brute_force_head_probability(triples, R))
    reps = 2000
    ph, pr, pt = h.repeat(reps), r.repeat(reps), t.repeat(reps)
    ph = torch.cat([ph, torch.zeros(reps, dtype=torch.long)])  # relation 2: p = 1/2
    pr = torch.cat([pr, torch.full((reps, ), 2)])
    pt = torch.cat([pt, torch.ones(reps, dtype=torch.long)])
    neg = sampler(ph, pr, pt)
    for rel in range(R):
        sel = pr == rel
        freq = neg.corrupt_head[sel].double().mean().item()
        n = int(sel.sum())
        pr_ = float(p[rel])
        assert abs(freq - pr_) < 5 * math.sqrt(pr_ * (1 - pr_) / n), (rel, freq, pr_)
    # Still exactly filtered.
    nh = torch.where(neg.corrupt_head[:, None], neg.index, ph[:, None])
    nt = torch.where(neg.corrupt_head[:, None], pt[:, None], neg.index)
    assert not known.contains(nh, pr[:, None], nt).any()


def test_bernoulli_explicit_probability():
    B = 8000
    p = torch.tensor([0.0, 1.0, 0.2])
    sampler = NegativeSampler(10, 1, 'bernoulli', head_probability=p,
                              generator=torch.Generator().manual_seed(8))
    rel = torch.arange(B) % 3
    neg = sampler(torch.zeros(B, dtype=torch.long), rel, torch.ones(B, dtype=torch.long))
    assert not neg.corrupt_head[rel == 0].any()
    assert neg.corrupt_head[rel == 1].all()
    freq = neg.corrupt_head[rel == 2].double().mean().item()
    assert abs(freq - 0.2) < 5 * math.sqrt(0.16 / (B / 3))


def test_bernoulli_needs_probability():
    with pytest.raises(ValueError, match='bernoulli'):
        NegativeSampler(10, 1, 'bernoulli')


# Misc #########################################################################################


def test_generator_reproducibility():
    N, R = 12, 3
    h, r, t = dense_kg(N, R, seed=9)
    known = KnownTriples(h, r, t, N, R)
    for kwargs in ({}, {'known': known}, {'known': known, 'strategy': 'bernoulli'}):
        a = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(10), **kwargs)
        b = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(10), **kwargs)
        c = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(11), **kwargs)
        for _ in range(3):  # successive calls stay in lockstep
            na, nb, nc = a(h, r, t), b(h, r, t), c(h, r, t)
            assert torch.equal(na.index, nb.index)
            assert torch.equal(na.corrupt_head, nb.corrupt_head)
            assert not torch.equal(na.index, nc.index)


def test_out_of_range_raises():
    N, R = 5, 2
    known = KnownTriples(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), N, R)
    ok = torch.tensor([0, 1])
    for sampler in (NegativeSampler(N), NegativeSampler(N, known=known)):
        with pytest.raises(ValueError, match=r'head holds entity id 5 at position 1'):
            sampler(torch.tensor([0, 5]), ok, ok)
        with pytest.raises(ValueError, match=r'tail holds entity id -1 at position 0'):
            sampler(ok, ok, torch.tensor([-1, 0]))
        with pytest.raises(ValueError, match=r'NegativeSampler: tail must be an integer tensor'):
            sampler(ok, ok, torch.tensor([0.5, 1.5]))  # not truncated to 0 and 1
    with pytest.raises(ValueError, match=r'rel holds relation id 2 at position 1'):
        NegativeSampler(N, known=known)(ok, torch.tensor([0, 2]), ok)


def test_bad_arguments():
    with pytest.raises(ValueError, match='strategy'):
        NegativeSampler(5, strategy='zipf')
    with pytest.raises(ValueError, match='num_negatives'):
        NegativeSampler(5, 0)
    with pytest.raises(ValueError, match='two entities'):
        NegativeSampler(1)


def test_empty_batch():
    neg = NegativeSampler(5, 3)(*(torch.empty(0, dtype=torch.long), ) * 3)
    assert neg.index.shape == (0, 3) and neg.corrupt_head.shape == (0, )


def test_filtered_single_free_entity():
    # (0, 0, ?) knows every tail but 4 and (?, 0, 1) every head but 2: the only negatives.
    N, B = 7, 200
    tails = [e for e in range(N) if e != 4]
    heads = [e for e in range(N) if e != 2]
    h = torch.tensor([0] * len(tails) + heads)
    t = torch.tensor(tails + [1] * len(heads))
    known = KnownTriples(h, torch.zeros_like(h), t, N, 1)
    sampler = NegativeSampler(N, 3, known=known, generator=torch.Generator().manual_seed(12))
    neg = sampler(torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long),
                  torch.ones(B, dtype=torch.long))
    assert neg.corrupt_head.any() and not neg.corrupt_head.all()
    assert (neg.index[neg.corrupt_head] == 2).all()
    assert (neg.index[~neg.corrupt_head] == 4).all()


# A side per negative ###########################################################################
#
# Statistical bounds: every frequency is checked within 5 binomial standard deviations of its
# expectation (a false alarm has probability ~6e-7 per check) and every distribution by the
# chi-square quantile of chi2_critical (p ~ 1e-6); the draws are seeded, so the tests are
# deterministic, and the bounds keep them valid across RNG implementations.


def within_5_sigma(successes: int, trials: int, p: float) -> bool:
    return abs(successes / trials - p) <= 5 * math.sqrt(p * (1 - p) / trials)


def test_side_per_negative_mixes_sides_within_a_positive():
    N, B, K = 9, 4000, 8
    gen = torch.Generator().manual_seed(20)
    head = torch.randint(0, N, (B, ), generator=gen)
    tail = torch.randint(0, N, (B, ), generator=gen)
    rel = torch.zeros(B, dtype=torch.long)
    sampler = NegativeSampler(N, K, generator=torch.Generator().manual_seed(21),
                              side_per='negative')
    assert repr(sampler).endswith("side_per='negative')")
    neg = sampler(head, rel, tail)
    assert neg.per_negative and neg.corrupt_head.shape == (B, K)
    assert neg.corrupt_head.dtype == torch.bool and neg.index.shape == (B, K)
    heads = neg.corrupt_head.sum(1)
    # Each side a fair coin per negative: the number of head corruptions of a positive is
    # Binomial(K, 1/2) (per positive it would be 0 or K only) ...
    counts = Counter(heads.tolist())
    expected = [B * math.comb(K, j) / 2**K for j in range(K + 1)]
    pooled = [(counts[0] + counts[K], expected[0] + expected[K])]  # the rare extremes
    pooled += [(counts[j], expected[j]) for j in range(1, K)]
    stat = sum((c - e)**2 / e for c, e in pooled)
    assert stat < chi2_critical(len(pooled) - 1), (stat, counts)
    # ... so a positive's negatives mix both sides with probability 1 - 2 / 2^K
    mixed = int(((heads > 0) & (heads < K)).sum())
    assert within_5_sigma(mixed, B, 1 - 2 / 2**K), mixed
    assert within_5_sigma(int(neg.corrupt_head.sum()), B * K, 0.5)
    # Every negative replaces its own side's entity, never by the entity it replaces.
    own = torch.where(neg.corrupt_head, head[:, None], tail[:, None])
    assert not (neg.index == own).any()
    h, r, t = neg.triples(head, rel, tail)
    assert torch.equal(torch.where(neg.corrupt_head, h, t), neg.index)
    assert torch.equal(torch.where(neg.corrupt_head, t, h),
                       torch.where(neg.corrupt_head, tail[:, None], head[:, None]))
    # Uniform over the N - 1 other entities, pooled over the replaced entity.
    for e in range(N):
        drawn = Counter(neg.index[own == e].tolist())
        assert_uniform(drawn, set(range(N)) - {e}, sum(drawn.values()))


def test_side_per_negative_bernoulli_probability():
    triples = [(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (5, 0, 6), (5, 0, 7),
               (1, 1, 0), (2, 1, 0), (3, 1, 4), (5, 1, 4)]
    N, R, K, reps = 8, 2, 6, 500
    h, r, t = torch.tensor(triples).T
    known = KnownTriples(h, r, t, N, R)
    sampler = NegativeSampler(N, K, 'bernoulli', known=known, side_per='negative',
                              generator=torch.Generator().manual_seed(22))
    p = sampler.head_probability
    assert p.tolist() == pytest.approx([3 / 4, 1 / 3])  # tph / (tph + hpt)
    ph, pr, pt = h.repeat(reps), r.repeat(reps), t.repeat(reps)
    neg = sampler(ph, pr, pt)
    for rel in range(R):
        sides = neg.corrupt_head[pr == rel]
        assert within_5_sigma(int(sides.sum()), sides.numel(), float(p[rel])), rel
        # independent per negative: both sides within one positive's negatives
        assert bool((sides.any(1) & (~sides).any(1)).any())
    # Explicit probabilities: 0 and 1 corrupt one side only, per negative too.
    sampler = NegativeSampler(10, K, 'bernoulli', head_probability=torch.tensor([0.0, 1.0]),
                              side_per='negative', generator=torch.Generator().manual_seed(23))
    rel = torch.arange(200) % 2
    neg = sampler(torch.zeros(200, dtype=torch.long), rel, torch.ones(200, dtype=torch.long))
    assert not neg.corrupt_head[rel == 0].any() and neg.corrupt_head[rel == 1].all()


@withCUDA
def test_side_per_negative_filtered_never_known_and_uniform(device):
    N, R, K = 12, 3, 8
    h, r, t = dense_kg(N, R, seed=1)
    known = KnownTriples(h, r, t, N, R).to(device)
    known_set, free_tails, free_heads = complements(h, r, t, N)
    sampler = NegativeSampler(N, K, known=known, side_per='negative',
                              generator=torch.Generator(device=device).manual_seed(24))
    grid = torch.tensor(list(itertools.product(range(N), range(R), range(N))))
    ph, pr, pt = grid.repeat(25, 1).T.to(device)
    neg = sampler(ph, pr, pt)
    assert neg.index.device.type == device.type and neg.corrupt_head.shape == (ph.numel(), K)
    per_query, checked_full = {}, 0
    for a, b, c, sides, drawn in zip(ph.tolist(), pr.tolist(), pt.tolist(),
                                     neg.corrupt_head.tolist(), neg.index.tolist()):
        for ch, e in zip(sides, drawn):
            free = free_heads(b, c) if ch else free_tails(a, b)
            if not free:  # no true negative: the unfiltered fallback
                checked_full += 1
                continue
            assert e in free and ((e, b, c) if ch else (a, b, e)) not in known_set
            q = ('head', b, c) if ch else ('tail', a, b)
            per_query.setdefault(q, Counter())[e] += 1
    nh, nr, nt = neg.triples(ph, pr, pt)
    hits = known.contains(nh, nr, nt)
    assert int(hits.sum()) <= checked_full
    checked = 0
    for (side, x, y), counts in per_query.items():
        free = free_heads(x, y) if side == 'head' else free_tails(x, y)
        if sum(counts.values()) >= 40 * len(free):
            assert_uniform(counts, free, sum(counts.values()))
            checked += 1
    assert checked > 50


def test_side_per_negative_twins_and_reproducibility():
    N, R = 12, 3
    h, r, t = dense_kg(N, R, seed=2)
    known = KnownTriples(h, r, t, N, R)
    make = lambda seed: NegativeSampler(  # noqa: E731
        N, 5, 'bernoulli', known=known, twins=True, side_per='negative',
        generator=torch.Generator().manual_seed(seed))
    a, b, c = make(25)(h, r, t), make(25)(h, r, t), make(26)(h, r, t)
    assert a.twins and a.per_negative
    assert torch.equal(a.index, b.index) and torch.equal(a.corrupt_head, b.corrupt_head)
    assert not torch.equal(a.corrupt_head, c.corrupt_head)
    assert not known.contains(*a.triples(h, r, t)).any()
    # the default keeps one side per positive
    d = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(25))(h, r, t)
    assert not d.per_negative and d.side_mask().shape == (h.numel(), 5)
    with pytest.raises(ValueError, match='side_per'):
        NegativeSampler(N, side_per='query')
