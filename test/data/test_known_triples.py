import pytest
import torch

from torch_mmkg.data import KnownTriples, build_mmkg
from torch_mmkg.testing import withCUDA

N, R, T = 50, 5, 400


@pytest.fixture
def random_triples():
    gen = torch.Generator().manual_seed(12345)
    h = torch.randint(0, N, (T, ), generator=gen)
    r = torch.randint(0, R, (T, ), generator=gen)
    t = torch.randint(0, N, (T, ), generator=gen)
    # Force duplicates, and the extreme ids (entity N-1, relation R-1) whose keys border the
    # next (h, r) block.
    h[300:350], r[300:350], t[300:350] = h[:50], r[:50], t[:50]
    h[350], r[350], t[350] = N - 1, R - 1, N - 1
    h[351], r[351], t[351] = N - 1, R - 1, 0
    h[352], r[352], t[352] = 0, 0, 0
    return h, r, t


def reference(h, r, t):
    known = set(zip(h.tolist(), r.tolist(), t.tolist()))
    tails, heads = {}, {}
    for a, b, c in known:
        tails.setdefault((a, b), set()).add(c)
        heads.setdefault((b, c), set()).add(a)
    return known, tails, heads


def random_queries(h, r, t, B=300, seed=7):
    gen = torch.Generator().manual_seed(seed)
    qh = torch.randint(0, N, (B, ), generator=gen)
    qr = torch.randint(0, R, (B, ), generator=gen)
    qt = torch.randint(0, N, (B, ), generator=gen)
    known = torch.randperm(T, generator=gen)[:B // 2]
    qh[:B // 2], qr[:B // 2], qt[:B // 2] = h[known], r[known], t[known]
    return qh, qr, qt


def test_len_and_repr(random_triples):
    h, r, t = random_triples
    known, _, _ = reference(h, r, t)
    index = KnownTriples(h, r, t, N, R)
    assert len(index) == len(known) < T
    assert repr(index) == f'KnownTriples({len(known)} triples, num_entities=50, num_relations=5)'
    assert index.device == torch.device('cpu')


def test_contains(random_triples):
    h, r, t = random_triples
    known, _, _ = reference(h, r, t)
    index = KnownTriples(h, r, t, N, R)
    qh, qr, qt = random_queries(h, r, t)
    expected = torch.tensor([x in known for x in zip(qh.tolist(), qr.tolist(), qt.tolist())])
    assert expected.any() and not expected.all()
    assert torch.equal(index.contains(qh, qr, qt), expected)
    # Exhaustive over all N * R * N triples.
    eh, er, et = torch.meshgrid(torch.arange(N), torch.arange(R), torch.arange(N),
                                indexing='ij')
    dense = index.contains(eh, er, et)
    assert dense.shape == (N, R, N)
    assert int(dense.sum()) == len(known)
    assert set(map(tuple, dense.nonzero().tolist())) == known


def test_contains_broadcasts(random_triples):
    h, r, t = random_triples
    known, _, _ = reference(h, r, t)
    index = KnownTriples(h, r, t, N, R)
    out = index.contains(h[:1], r[:1], torch.arange(N))
    assert out.shape == (N, )
    assert out.tolist() == [(int(h[0]), int(r[0]), e) in known for e in range(N)]


@pytest.mark.parametrize('side', ['tail', 'head'])
def test_neighbours_counts_and_filter_mask(random_triples, side):
    h, r, t = random_triples
    _, tails, heads = reference(h, r, t)
    index = KnownTriples(h, r, t, N, R)
    qh, qr, qt = random_queries(h, r, t)
    if side == 'tail':
        query, ent = index.tails(qh, qr)
        counts = index.count_tails(qh, qr)
        mask = index.filter_mask(qh, qr, side='tail')
        ref = [sorted(tails.get(k, ())) for k in zip(qh.tolist(), qr.tolist())]
    else:
        query, ent = index.heads(qr, qt)
        counts = index.count_heads(qr, qt)
        mask = index.filter_mask(None, qr, qt, side='head')
        ref = [sorted(heads.get(k, ())) for k in zip(qr.tolist(), qt.tolist())]
    # Exact lists, sorted by query then entity as documented.
    expected_query = [i for i, es in enumerate(ref) for _ in es]
    expected_ent = [e for es in ref for e in es]
    assert query.tolist() == expected_query
    assert ent.tolist() == expected_ent
    assert counts.tolist() == [len(es) for es in ref]
    dense = torch.zeros(len(ref), N, dtype=torch.bool)
    for i, es in enumerate(ref):
        dense[i, list(es)] = True
    assert mask.shape == (len(ref), N) and mask.dtype == torch.bool
    assert torch.equal(mask, dense)
    assert any(len(es) == 0 for es in ref) and any(len(es) > 1 for es in ref)


def test_adjacent_key_blocks():
    # (N-1, R-1) is the last tail block; (0, R-1, N-1) and (1, 0, 0) have adjacent keys.
    h = torch.tensor([N - 1, N - 1, 0, 1, N - 2])
    r = torch.tensor([R - 1, R - 1, R - 1, 0, R - 1])
    t = torch.tensor([N - 1, 0, N - 1, 0, N - 1])
    index = KnownTriples(h, r, t, N, R)
    assert index.tails(torch.tensor([N - 1]), torch.tensor([R - 1]))[1].tolist() == [0, N - 1]
    assert index.tails(torch.tensor([0]), torch.tensor([R - 1]))[1].tolist() == [N - 1]
    assert index.tails(torch.tensor([1]), torch.tensor([0]))[1].tolist() == [0]
    assert index.tails(torch.tensor([N - 2]), torch.tensor([R - 2]))[1].tolist() == []
    assert index.count_tails(torch.tensor([0, 1, N - 1, N - 2]),
                             torch.tensor([R - 1, 0, R - 1, 0])).tolist() == [1, 1, 2, 0]
    assert index.heads(torch.tensor([R - 1]), torch.tensor([N - 1]))[1].tolist() == \
        [0, N - 2, N - 1]
    assert index.count_heads(torch.tensor([R - 1, 0]), torch.tensor([0, 0])).tolist() == [1, 1]
    assert index.contains(torch.tensor([N - 1, 0, 1]), torch.tensor([R - 1, R - 1, R - 1]),
                          torch.tensor([N - 1, 0, 0])).tolist() == [True, False, False]
    mask = index.filter_mask(torch.tensor([N - 1]), torch.tensor([R - 1]))
    assert mask[0].nonzero().view(-1).tolist() == [0, N - 1]


def test_empty_index():
    e = torch.empty(0, dtype=torch.long)
    index = KnownTriples(e, e, e, N, R)
    assert len(index) == 0
    q = torch.tensor([0, N - 1])
    qr = torch.tensor([0, R - 1])
    assert index.contains(q, qr, q).tolist() == [False, False]
    query, ent = index.tails(q, qr)
    assert query.numel() == 0 and ent.numel() == 0
    query, ent = index.heads(qr, q)
    assert query.numel() == 0 and ent.numel() == 0
    assert index.count_tails(q, qr).tolist() == [0, 0]
    assert index.count_heads(qr, q).tolist() == [0, 0]
    assert not index.filter_mask(q, qr).any()
    assert index.filter_mask(q, qr).shape == (2, N)
    assert not index.filter_mask(None, qr, q, side='head').any()


@pytest.mark.parametrize('name,pos,value', [('head', 2, N), ('rel', 0, R), ('tail', 1, -1),
                                            ('rel', 3, -1)])
def test_out_of_range_construction(name, pos, value):
    h, r, t = torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), \
        torch.zeros(4, dtype=torch.long)
    {'head': h, 'rel': r, 'tail': t}[name][pos] = value
    limit = R if name == 'rel' else N
    kind = 'relation' if name == 'rel' else 'entity'
    with pytest.raises(ValueError, match=rf"KnownTriples: {name} holds {kind} id {value} at "
                                         rf"position {pos}, outside \[0, {limit}\)"):
        KnownTriples(h, r, t, N, R)


def test_out_of_range_queries(random_triples):
    # An out-of-range id would alias another triple's key, e.g. (h, r, N) == (h, r + 1, 0).
    h, r, t = random_triples
    index = KnownTriples(h, r, t, N, R)
    ok = torch.tensor([0, 1])
    okr = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"tail holds entity id 50 at position 1, outside "
                                         r"\[0, 50\)"):
        index.contains(ok, okr, torch.tensor([0, N]))
    with pytest.raises(ValueError, match=r"rel holds relation id 5 at position 0, outside "
                                         r"\[0, 5\)"):
        index.tails(ok, torch.tensor([R, 0]))
    with pytest.raises(ValueError, match=r"head holds entity id -1 at position 1, outside"):
        index.count_tails(torch.tensor([0, -1]), okr)
    with pytest.raises(ValueError, match=r"tail holds entity id 50 at position 0, outside"):
        index.heads(okr, torch.tensor([N, 0]))
    with pytest.raises(ValueError, match=r"rel holds relation id -1 at position 1, outside"):
        index.count_heads(torch.tensor([0, -1]), ok)
    with pytest.raises(ValueError, match=r"head holds entity id 50 at position 0, outside"):
        index.filter_mask(torch.tensor([N, 0]), okr)
    with pytest.raises(ValueError, match=r"side must be 'head' or 'tail', got 'both'"):
        index.filter_mask(ok, okr, ok, side='both')
    with pytest.raises(ValueError, match=r"needs the tail indices"):
        index.filter_mask(None, okr, side='head')


def test_bad_shapes_and_overflow():
    def zeros(n):
        return torch.zeros(n, dtype=torch.long)

    with pytest.raises(ValueError, match=r"1-d tensors of equal length"):
        KnownTriples(zeros(3), zeros(2), zeros(3), N, R)
    with pytest.raises(ValueError, match=r"overflows 64-bit triple keys"):
        KnownTriples(zeros(1), zeros(1), zeros(1), 2**31, 2**2)


def test_float_ids_are_refused_not_truncated():
    ids = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"KnownTriples: tail must be an integer tensor of "
                                         r"entity ids in \[0, 50\), got a torch.float32"):
        KnownTriples(ids, ids, torch.tensor([0.7, 1.2]), N, R)
    index = KnownTriples(ids, ids, ids, N, R)
    with pytest.raises(ValueError, match=r"head must be an integer tensor"):
        index.contains(torch.tensor([0.9, 1.0]), ids, ids)  # 0.9 would become the known 0
    with pytest.raises(ValueError, match=r"rel must be an integer tensor"):
        index.tails(ids, torch.tensor([True, False]))


def test_from_data(random_triples):
    h, r, t = random_triples
    triples = torch.stack([h, r, t], dim=1)
    data = build_mmkg(N, R, {'train': triples[:300], 'val': triples[300:350],
                             'test': triples[350:]})
    known, _, _ = reference(h, r, t)
    assert len(KnownTriples.from_data(data)) == len(known)
    train = KnownTriples.from_data(data, 'train')
    assert len(train) == len(reference(h[:300], r[:300], t[:300])[0])
    assert bool(train.contains(h[352:353], r[352:353], t[352:353])) == \
        ((0, 0, 0) in set(zip(h[:300].tolist(), r[:300].tolist(), t[:300].tolist())))


@withCUDA
def test_to_device(random_triples, device):
    h, r, t = random_triples
    index = KnownTriples(h, r, t, N, R)
    qh, qr, qt = random_queries(h, r, t)
    expected = index.contains(qh, qr, qt)
    expected_mask = index.filter_mask(qh, qr)
    assert index.to(device) is index
    assert index.device.type == device.type
    assert index.tail_keys.device.type == device.type
    assert index.head_keys.device.type == device.type
    # Queries on the CPU are moved to the index's device.
    assert torch.equal(index.contains(qh, qr, qt).cpu(), expected)
    assert torch.equal(index.filter_mask(qh.to(device), qr.to(device)).cpu(), expected_mask)
    assert index.to('cpu').device == torch.device('cpu')
    assert torch.equal(index.contains(qh, qr, qt), expected)
