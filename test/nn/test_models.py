import inspect

import pytest
import torch

from torch_mmkg.data import KnownTriples
from torch_mmkg.loader import Negatives, NegativeSampler
from torch_mmkg.nn import MODELS, BCELoss, DistMult, FromDataMixin, RotatE, TuckER
from torch_mmkg.nn.fusion import FUSIONS
from torch_mmkg.nn.loss import KGELoss, MarginRankingLoss
from torch_mmkg.testing import assert_scoring_consistent, model_test_kwargs

N, R, D, T = 30, 4, 8, 60
ATOL = 1e-9


def triples(seed=0, num=T):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (num, ), generator=gen),
            torch.randint(0, R, (num, ), generator=gen),
            torch.randint(0, N, (num, ), generator=gen))


#: Models that take per-entity modality features (built with two modalities, with holes).
MULTIMODAL = {n for n, cls in MODELS.items() if issubclass(cls, FromDataMixin)}
#: Models trained 1-N (with inverse relations), which have no negative-sampling loss.
ONE_TO_N = {n for n, cls in MODELS.items() if cls.one_to_n}


def make(name, **kwargs):
    torch.manual_seed(0)
    if name in MULTIMODAL or 'features' in inspect.signature(MODELS[name]).parameters:
        kwargs['features'] = {'image': torch.randn(N, 6), 'text': torch.randn(N, 5)}
        kwargs['masks'] = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 1}
    kwargs = {**model_test_kwargs(name, D), **kwargs}
    return MODELS[name](N, R, D, **kwargs).double()


@pytest.mark.parametrize('name', list(MODELS))
def test_forward_matches_score_tails_and_heads(name):
    model = make(name).eval()
    h, r, t = triples()
    rows = torch.arange(T)
    with torch.no_grad():
        score = model(h, r, t)
        assert score.shape == (T, ) and score.dtype == torch.float64
        tails = model.score_tails(h, r)
        heads = model.score_heads(r, t)
        assert tails.shape == heads.shape == (T, N)
        assert torch.allclose(tails[rows, t], score, atol=ATOL, rtol=0)
        # Every candidate tail, through forward's broadcasting.
        all_e = torch.arange(N)
        assert torch.allclose(tails, model(h[:, None], r[:, None], all_e[None]), atol=ATOL)
        # A precomputed cache gives the same scores.
        cache = model.prepare_scoring()
        assert torch.allclose(model.score_tails(h, r, cache), tails, atol=ATOL, rtol=0)
        if model.inverse_relations:
            # Heads are predicted as tails of the inverse relation: (t, r + R, e).
            assert name in ONE_TO_N
            assert torch.allclose(heads, model.score_tails(t, r + R), atol=ATOL, rtol=0)
            assert torch.allclose(heads[rows, h], model(t, r + R, h), atol=ATOL, rtol=0)
        else:
            assert torch.allclose(heads[rows, h], score, atol=ATOL, rtol=0)
            assert torch.allclose(heads, model(all_e[None], r[:, None], t[:, None]),
                                  atol=ATOL)


def test_inverse_relations_for_negative_sampling_model():
    model = make('distmult', inverse_relations=True).eval()
    assert model.rel_emb.num_embeddings == 2 * R
    h, r, t = triples(1)
    with torch.no_grad():
        assert torch.allclose(model.score_heads(r, t), model.score_tails(t, r + R), atol=ATOL)


def test_rotate_relation_phases():
    model = make('rotate')
    r = torch.arange(R)
    phase = model.relation(r)
    stored = model.rel_emb.weight
    assert torch.allclose(phase, stored * torch.pi / model.embedding_range)
    # Initialised in ±(γ + ε)/d, so the phases cover (-π, π).
    assert stored.abs().max() <= model.embedding_range
    assert phase.abs().max() <= torch.pi + 1e-12


def test_entity_and_relation_widths():
    widths = {'transe': (D, D), 'distmult': (D, D), 'complex': (2 * D, 2 * D),
              'rotate': (2 * D, D), 'pairre': (D, 2 * D), 'tucker': (D, D),
              'native': (2 * D, D), 'tbkgc': (D, D), 'momok': (D, 256),  # d_r: the authors' r_dim
              'lbmkgc': (2 * D, D), 'vbkgc': (D, D)}
    widths.update({'ikrl': (D, D), 'qeb': (D, 2 * D)})  # QEB: [r, r_m]
    widths.update({'literale': (D, D), 'kbln': (D, D + 11)})  # KBLN: [r, w_r], 6 + 5 columns
    widths.update({'transae': (D, D), 'mmkrl': (D, D)})  # TransAE: the code is the entity
    widths.update({'adamf': (2 * D, D)})
    widths.update({'imf': (D, D), 'mose': (2 * D, 2 * D)})  # MoSE: complex rank D
    widths.update({'vista': (D, D), 'mygo': (D, D)})  # [r, direction flag] scored
    widths.update({'rsme': (2 * D, 2 * D), 'otkge': (2 * D, 2 * D)})  # ComplEx rank D
    widths.update({'mkgformer': (D, D)})  # entity and relation tokens of BERT's width
    assert set(widths) == set(MODELS)
    for name, (de, dr) in widths.items():
        model = make(name)
        if name == 'mkgformer':  # entity and relation tokens beside BERT's vocabulary
            assert model.entity_embeddings.weight.shape == (N, de)
            assert model.relation_embeddings.weight.shape == (R, dr)
            continue
        if model.node_emb is None:  # TransAE: no entity table, the autoencoder's code
            assert model.code().shape == (N, de) and model.rel_emb.weight.shape == (R, dr)
            continue
        assert model.node_emb.weight.shape == (N, de)
        rows = 2 * R if name in ONE_TO_N else R
        if name in ('literale', 'kbln'):  # 1-N with the relation itself for head queries
            rows = R
        if name in ('vista', 'mygo'):  # head queries: relation r with the [MASK] at the head
            rows = R
        if name in ('imf', 'mose'):  # one relation table per modality slot
            assert model.rel_emb.shape == (len(model.slots), rows, dr)
            continue
        if name == 'momok':  # one relation table per modality slot
            assert model.rel_emb.shape == (len(model.slots), rows, dr)
        else:
            assert model.rel_emb.weight.shape == (rows, dr)


def test_tucker_relation_channels():
    model = TuckER(N, R, D, relation_channels=5)
    assert model.rel_emb.weight.shape == (2 * R, 5)
    assert model.interaction.core.shape == (D, 5, D)
    model.eval()
    h, r, t = triples(2)
    assert model(h, r, t).shape == (T, )


@pytest.mark.parametrize('name', [n for n in MODELS if n not in ONE_TO_N])
def test_score_negatives_match_forward(name):
    model = make(name).eval()
    h, r, t = triples(3, num=10)
    neg = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(0))(h, r, t)
    assert neg.corrupt_head.any() and (~neg.corrupt_head).any()
    with torch.no_grad():
        pos, scores = model.score_negatives(h, r, t, neg)
        assert torch.allclose(pos, model(h, r, t), atol=ATOL, rtol=0)
        ch = neg.corrupt_head[:, None]
        hh = torch.where(ch, neg.index, h[:, None])
        tt = torch.where(ch, t[:, None], neg.index)
        assert torch.allclose(scores, model(hh, r[:, None], tt), atol=ATOL, rtol=0)


@pytest.mark.parametrize('name', ['distmult', 'rotate'])  # generic and fused paths
def test_score_negatives_inverse_relations(name):
    # Head corruptions are scored like score_heads scores them, (t, r + R, e), so that the
    # inverse relations that evaluation uses for head prediction are the ones trained.
    kwargs = {'regularization': None} if name == 'distmult' else {}
    model = make(name, inverse_relations=True, **kwargs).train()
    h, r, t = triples(10, num=10)
    neg = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(1))(h, r, t)
    ch = neg.corrupt_head
    assert ch.any() and (~ch).any()
    pos, scores = model.score_negatives(h, r, t, neg)
    with torch.no_grad():
        heads = model.score_heads(r, t)
        tails = model.score_tails(h, r)
        rows = torch.arange(10)
        assert torch.allclose(pos[ch], heads[rows, h][ch], atol=ATOL)
        assert torch.allclose(pos[~ch], tails[rows, t][~ch], atol=ATOL)
        assert torch.allclose(scores[ch], heads[ch].gather(1, neg.index[ch]), atol=ATOL)
        assert torch.allclose(scores[~ch], tails[~ch].gather(1, neg.index[~ch]), atol=ATOL)
    # Only head corruptions: the gradient reaches the inverse relations only.
    only_heads = Negatives(neg.index, torch.ones_like(ch))
    model.loss(h, r, t, only_heads).backward()
    grad = model.rel_emb.weight.grad.abs().sum(-1)
    assert (grad[:R] == 0).all() and (grad[R + torch.unique(r)] > 0).all()


@pytest.mark.parametrize('name', [n for n in MODELS if n not in ONE_TO_N])
@pytest.mark.parametrize('explicit', [False, True])
def test_loss(name, explicit, single_thread):
    model = make(name).train()
    assert isinstance(model.loss_fn, KGELoss)
    h, r, t = triples(4, num=16)
    negatives = NegativeSampler(N, 4)(h, r, t) if explicit else None
    loss = model.loss(h, r, t, negatives)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    if model.node_emb is None:  # TransAE: the autoencoder's code is the entity
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in model.representation.parameters())
        assert model.rel_emb.weight.grad.abs().sum() > 0
        return
    for emb in (model.node_emb, model.rel_emb):
        grad = emb.weight.grad
        assert grad is not None and torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    # Entities that appear in the batch receive a gradient (a margin loss gives none to
    # pairs already separated by the margin).
    if not isinstance(model.loss_fn, MarginRankingLoss):
        assert (model.node_emb.weight.grad[h].abs().sum(-1) > 0).all()


def test_loss_with_loader_batch():
    model = make('rotate')
    h, r, t = triples(5)
    known = KnownTriples(h, r, t, N, R)
    loader = model.loader(h, r, t, num_negatives=3, known=known, batch_size=16,
                          generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch.negatives.index.shape == (16, 3)
    loss = model.loss(*batch)
    assert torch.isfinite(loss)


def test_tucker_loss_under_negative_sampling_is_the_logistic_loss():
    # The regime is outside the model: TuckER (default 1-N) trains by negative sampling
    # with the logistic (softplus) loss, its scores being logits.
    model = make('tucker').eval()
    h, r, t = triples(6)
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    pos, scores = model.score_negatives(h, r, t, neg)
    expected = 0.5 * (torch.nn.functional.softplus(-pos).mean() +
                      torch.nn.functional.softplus(scores).mean())
    assert torch.allclose(model.loss(h, r, t, neg), expected, atol=ATOL)


def test_tucker_loss_1n(single_thread):
    model = make('tucker')
    h, r, t = triples(7)
    loader = model.loader_1n(h, r, t, batch_size=16, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch.target.shape == (16, N)
    assert int(batch.rel.max()) < 2 * R
    # In eval mode the loss is the label-smoothed BCE of the 1-vs-all scores.
    model.eval()
    with torch.no_grad():
        expected = BCELoss(0.1)(model.score_tails(batch.entity, batch.rel), batch.target)
        assert torch.allclose(model.loss_1n(*batch), expected, atol=ATOL)
    model.train()
    loss = model.loss_1n(*batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for p in (model.node_emb.weight, model.rel_emb.weight, model.interaction.core):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_random_sample_signature():
    sig = inspect.signature(RotatE.random_sample)
    names = list(sig.parameters)
    assert names[:4] == ['self', 'head_index', 'rel_type', 'tail_index']
    assert all(p.default is not inspect.Parameter.empty
               for p in list(sig.parameters.values())[4:])


@pytest.mark.parametrize('K', [1, 4])
def test_random_sample(K):
    model = make('transe')
    h, r, t = triples(8, num=20)
    out = model.random_sample(h, r, t) if K == 1 else model.random_sample(h, r, t, K)
    nh, nr, nt = out
    assert nh.shape == nr.shape == nt.shape == (20 * K, )
    ph, pr, pt = (x.repeat_interleave(K) for x in (h, r, t))
    assert torch.equal(nr, pr)
    # Exactly one of head and tail differs from the positive of the row.
    assert torch.equal((nh != ph) ^ (nt != pt), torch.ones(20 * K, dtype=torch.bool))
    assert nh.min() >= 0 and nt.max() < N


def test_random_sample_side_per_negative():
    model = make('transe')
    h, r, t = triples(8, num=200)
    K = 6
    nh, nr, nt = model.random_sample(h, r, t, K, side_per='negative',
                                     generator=torch.Generator().manual_seed(1))
    ph, pt = h.repeat_interleave(K), t.repeat_interleave(K)
    head_side = (nh != ph).view(-1, K)
    assert torch.equal((nh != ph) ^ (nt != pt), torch.ones(200 * K, dtype=torch.bool))
    assert bool((head_side.any(1) & (~head_side).any(1)).any())  # both sides in one row


@pytest.mark.parametrize('p_norm', [1.0, 2.0])
def test_transe_normalize_is_openke(p_norm):
    # OpenKE's TransE (norm_flag=True): F.normalize(h) + F.normalize(r) - F.normalize(t)
    import torch.nn.functional as F
    model = make('transe', normalize=True, p_norm=p_norm, margin=3.0).eval()
    h, r, t = triples(9, num=12)
    e, w = model.node_emb.weight, model.rel_emb.weight
    with torch.no_grad():
        want = 3.0 - (F.normalize(e[h], dim=-1) + F.normalize(w[r], dim=-1) -
                      F.normalize(e[t], dim=-1)).norm(p=p_norm, dim=-1)
        assert torch.allclose(model(h, r, t), want, atol=ATOL)
        assert torch.allclose(model.score_tails(h, r)[torch.arange(12), t], want, atol=ATOL)
        assert torch.allclose(model.score_heads(r, t)[torch.arange(12), h], want, atol=ATOL)
        # the scale of the embeddings no longer matters; without normalize it does
        model.node_emb.weight.mul_(3.0)
        assert torch.allclose(model(h, r, t), want, atol=ATOL)
        plain = make('transe', p_norm=p_norm, margin=3.0).eval()
        assert not torch.allclose(plain(h, r, t), want, atol=1e-3)
    assert_scoring_consistent(model, h, r, t, atol=ATOL)


def test_random_sample_filtered():
    model = make('distmult')
    gen = torch.Generator().manual_seed(0)
    h, r, t = triples(9, num=200)
    known = KnownTriples(h, r, t, N, R)
    nh, nr, nt = model.random_sample(h, r, t, 5, known=known, generator=gen)
    assert not known.contains(nh, nr, nt).any()


# Learning ###################################################################################

NUM_E = 20


def planted(symmetric: bool):
    r"""Relation 0 maps i -> i + 1 and relation 1 maps i -> i + 5 (mod 20); the symmetric
    variant maps i <-> i xor 1 and i <-> i + 10, both involutions (DistMult's score is
    symmetric in head and tail, so it cannot rank the cyclic relations: there its filtered
    MRR stays at 0.75)."""
    i = torch.arange(NUM_E)
    r = torch.cat([torch.zeros(NUM_E), torch.ones(NUM_E)]).long()
    if symmetric:
        t = torch.cat([i ^ 1, (i + 10) % NUM_E])
    else:
        t = torch.cat([(i + 1) % NUM_E, (i + 5) % NUM_E])
    return torch.cat([i, i]), r, t


@pytest.mark.parametrize('cls,kwargs,symmetric', [
    (RotatE, dict(margin=6.0), False),
    (DistMult, dict(), True),
])
def test_learns_planted_graph(cls, kwargs, symmetric, single_thread):
    h, r, t = planted(symmetric)
    known = KnownTriples(h, r, t, NUM_E, 2)
    torch.manual_seed(12345)
    dim = 8 if cls is RotatE else 16
    model = cls(NUM_E, 2, dim, **kwargs)
    _, mrr_untrained, _ = model.test(h, r, t, known=known, log=False)
    assert mrr_untrained < 0.5  # the bar below is not reachable by chance

    sampler = NegativeSampler(NUM_E, 8, known=known,
                              generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(200):
        optimizer.zero_grad()
        loss = model.loss(h, r, t, sampler(h, r, t))
        loss.backward()
        optimizer.step()
    model.eval()
    mr, mrr, hits = model.test(h, r, t, known=known, log=False, k=1)
    assert mrr > 0.9, (mr, mrr, hits)
    assert mr < 1.5


# The features a state dict does not hold ###################################################

def _with_features(name, image):
    torch.manual_seed(0)
    features = {'image': image, 'text': torch.ones(N, 5)}
    masks = {'image': torch.ones(N, dtype=torch.bool), 'text': torch.arange(N) % 4 != 1}
    # MoMoK fine-tunes its feature tables by default: then the state dict holds them.
    kwargs = {'finetune_features': False} if name == 'momok' else {}
    kwargs = {'trainable_features': False} if name == 'mmkrl' else kwargs  # likewise
    kwargs = {'trainable_features': False} if name == 'adamf' else kwargs  # likewise
    return MODELS[name](N, R, D, features=features, masks=masks, **kwargs)


def test_finetuned_features_are_parameters_the_state_dict_holds():
    image = torch.randn(N, 6)
    torch.manual_seed(0)
    features = {'image': image, 'text': torch.ones(N, 5)}
    model = MODELS['momok'](N, R, D, features=features)
    params = dict(model.named_parameters())
    x = params['representation.x_image']
    assert torch.allclose(x, torch.nn.functional.normalize(image, dim=-1))
    assert 'x_image' not in model.feature_fingerprint()
    model.loss_1n(torch.arange(4), torch.zeros(4, dtype=torch.long),
                  torch.ones(4, N)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        x.add_(1.0)
    other = MODELS['momok'](N, R, D, features=features)
    other.load_state_dict(model.state_dict())
    assert torch.equal(dict(other.named_parameters())['representation.x_image'], x)


@pytest.mark.parametrize('name', sorted(MULTIMODAL))
def test_state_dict_records_the_features(name):
    import warnings

    from torch_mmkg.nn import FeatureMismatchWarning
    image = torch.randn(N, 6)
    model = _with_features(name, image)
    fingerprint = model.feature_fingerprint()
    assert {'x_image', 'mask_image', 'x_text', 'mask_text'} <= set(fingerprint)
    state = model.state_dict()
    assert state['_extra_state'] == {'feature_fingerprint': fingerprint}
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the same features: no warning
        _with_features(name, image.clone()).load_state_dict(state)
    other = image.clone()
    other[3, 2] += 1e-3  # one value of one row
    with pytest.warns(FeatureMismatchWarning, match=r'built on other features \(x_image '
                                                    r'differs: sha256 [0-9a-f]{16} saved'):
        _with_features(name, other).load_state_dict(state)
    # A state dict of version 0.1 (no fingerprint) still loads, strictly.
    del state['_extra_state']
    _with_features(name, other).load_state_dict(state)
    # Changing a buffer in place changes the fingerprint (the cache follows it).
    model.representation.x_image[0, 0] += 1.0
    assert model.feature_fingerprint()['x_image'] != fingerprint['x_image']


def test_structural_models_have_an_empty_fingerprint():
    model = RotatE(N, R, D)
    assert model.feature_fingerprint() == {}
    RotatE(N, R, D).load_state_dict(model.state_dict())


# Any fusion in any model ####################################################################

@pytest.mark.parametrize('fusion', list(FUSIONS))
@pytest.mark.parametrize('name', ['native', 'lbmkgc', 'tbkgc'])
def test_every_registered_fusion_runs_in_the_model(name, fusion, single_thread):
    # NATIVE and LBMKGC fuse the whole stack (structure and modalities), TBKGC its modalities
    # into e_mm: in each, any registered fusion by name (any case), scored consistently by
    # every path and trained by both regimes.
    model = make(name, fusion=fusion.upper())
    inner = model.fusion.inner if name == 'tbkgc' else model.fusion
    assert type(inner) is FUSIONS[fusion]
    h, r, t = triples(11)
    assert_scoring_consistent(model.eval(), h, r, t, atol=ATOL)
    model.train()
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    target = torch.zeros(T, N, dtype=torch.float64)
    target[torch.arange(T), t] = 1.0
    for loss in (model.loss(h, r, t, neg), model.loss_1n(h, r, target)):
        assert torch.isfinite(loss)
        loss.backward()
    grads = [n for n, p in inner.named_parameters() if p.grad is None]
    assert not grads, grads
