r"""The same model code on in-memory and on disk-backed features
(:class:`~torch_mmkg.data.feature_store.DiskFeatures`): identical scores, losses, training
epochs and fingerprints; batches read only the rows they touch; evaluation streams entity
chunks; what needs every entity at once says so."""
import copy
import math
import warnings

import pytest
import torch

import torch_mmkg.nn.representation as representation_module
from torch_mmkg.data import ENTITY, open_features, write_features
from torch_mmkg.data.feature_store import (DiskFeatures, FeaturesTooLargeError,
                                           full_read_limit, write_array)
from torch_mmkg.nn import MODELS, FeatureMismatchWarning
from torch_mmkg.nn.representation import EntityRepresentation, register_modalities
from torch_mmkg.testing import withCUDA

#: The models of the acceptance test, with arguments that keep their features frozen (a
#: fine-tuned feature table is an in-memory parameter by definition).
MODELS_UNDER_TEST = {
    'ikrl': {},
    'native': {},
    'momok': dict(finetune_features=False),
    'lbmkgc': dict(alignment_weight=0.1),
}

_GRAPHS = {}


def _graphs(tmp_path_factory):
    r"""A tiny FakeMMKGDataset graph and the same graph with its features written by the
    converter and opened from disk."""
    if 'mem' not in _GRAPHS:
        from torch_mmkg.datasets.fake import FakeMMKGDataset
        mem = FakeMMKGDataset(num_entities=20, num_relations=3, num_clusters=4,
                              num_triples=120, modalities={'image': 6, 'text': 5}, seed=0)[0]
        folder = str(tmp_path_factory.mktemp('disk_features'))
        write_features(mem, folder)
        _GRAPHS.update(mem=mem, disk=open_features(mem, folder), folder=folder)
    return copy.copy(_GRAPHS['mem']), copy.copy(_GRAPHS['disk'])


@pytest.fixture
def graphs(tmp_path_factory):
    return _graphs(tmp_path_factory)


def _pair(name, graphs, seed=0, **kwargs):
    mem, disk = graphs
    kwargs = {**MODELS_UNDER_TEST.get(name, {}), **kwargs}
    torch.manual_seed(seed)
    a = MODELS[name].from_data(mem, 4, **kwargs)
    torch.manual_seed(seed)
    b = MODELS[name].from_data(disk, 4, **kwargs)
    return a, b


def _triples(seed=3, n=8, N=20, R=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def _scores(model, h, r, t):
    from torch_mmkg.loader import NegativeSampler
    neg = NegativeSampler(20, 3, generator=torch.Generator().manual_seed(1))(h, r, t)
    out = {}
    with torch.no_grad():
        model.eval()
        out['forward'] = model(h, r, t)
        out['tails'] = model.score_tails(h, r)
        out['heads'] = model.score_heads(r, t)
        batch = model.score_batch(h, r, t, neg)
        for i, (_, pos, negs) in enumerate(batch.views):
            out[f'pos{i}'], out[f'neg{i}'] = pos, negs
    model.train()
    torch.manual_seed(5)
    out['loss'] = model.loss(h, r, t, neg).detach()
    return out


def _disk_modalities(model):
    return [m for m in model.modalities
            if isinstance(getattr(model.representation, f'x_{m}'), DiskFeatures)]


@pytest.mark.parametrize('name', sorted(MODELS_UNDER_TEST))
def test_scores_and_losses_are_identical(name, graphs):
    a, b = _pair(name, graphs)
    assert _disk_modalities(b) == ['image', 'text'] and not _disk_modalities(a)
    h, r, t = _triples()
    want, got = _scores(a, h, r, t), _scores(b, h, r, t)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), f"{name}: {key} differs on disk"


@pytest.mark.parametrize('name, regime', [(n, None) for n in sorted(MODELS_UNDER_TEST)] +
                         [('native', '1-n'), ('momok', 'negative_sampling'),
                          ('native', 'mmrns')])
def test_one_training_epoch_is_identical(name, regime, graphs):
    from torch_mmkg.training import TrainConfig, Trainer
    results, states = [], []
    args = {'pre_sample': 8} if regime == 'mmrns' else None  # its KCA reads the tables whole
    for data, model in zip(graphs, _pair(name, graphs)):
        cfg = TrainConfig(regime=regime, epochs=1, eval_every=1, batch_size=32,
                          num_negatives=4, progress=False, test=False, seed=0,
                          regime_args=args)
        torch.manual_seed(7)  # a regime's parts (MMRNS's KCA) are initialised here
        trainer = Trainer(model, data, cfg)
        torch.manual_seed(123)  # MoMoK's noisy gating draws from the global generator
        results.append(trainer.fit())
        states.append(trainer.model.state_dict())
    (ra, rb), (sa, sb) = results, states
    assert math.isfinite(ra['history'][0]['loss'])
    assert ra['history'][0]['loss'] == rb['history'][0]['loss']
    assert ra['history'][0]['val'] == rb['history'][0]['val']  # every validation metric
    assert ra['best_val'] == rb['best_val']
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), f"{name}: {k} differs after an epoch on disk"
    # the model on disk still reads its features from disk after training
    assert _disk_modalities(trainer.model) == ['image', 'text']


@pytest.mark.parametrize('name', sorted(set(MODELS) - {'mkgformer'}))
def test_every_multimodal_model_scores_the_same_on_disk(name, graphs):
    r"""Every registered model built from a graph's features: forward and 1-vs-all scores
    on disk-backed features are those on the same features in memory (models that need
    every row at once read them whole, within the full-read limit)."""
    cls = MODELS[name]
    if not hasattr(cls, 'from_data'):
        pytest.skip('a structural model')
    a, b = _pair(name, graphs)
    h, r, t = _triples()
    with torch.no_grad():
        a.eval(), b.eval()
        assert torch.equal(a(h, r, t), b(h, r, t))
        assert torch.equal(a.score_tails(h, r), b.score_tails(h, r))
        assert torch.equal(a.score_heads(r, t), b.score_heads(r, t))


def test_fingerprint_and_checkpoints_move_between_memory_and_disk(graphs, tmp_path):
    a, b = _pair('native', graphs)
    fa, fb = a.feature_fingerprint(), b.feature_fingerprint()
    assert fa == fb and set(fa) == {'x_image', 'x_text', 'mask_image', 'mask_text'}
    assert not any(k.startswith('x_') for k in b.state_dict())  # never in the state dict
    torch.manual_seed(9)
    c = MODELS['native'].from_data(graphs[1], 4)
    with warnings.catch_warnings():
        warnings.simplefilter('error', FeatureMismatchWarning)
        c.load_state_dict(a.state_dict())  # an in-memory checkpoint into a disk model
        a.load_state_dict(b.state_dict())  # and back
    # other values on disk: another fingerprint, a warning on load
    mem, disk = graphs
    other = copy.copy(disk)
    x = mem[ENTITY].x_image.clone()
    x[0, 0] += 1
    other[ENTITY].x_image = write_array(x, str(tmp_path / 'other.npy'))
    d = MODELS['native'].from_data(other, 4)
    assert d.feature_fingerprint()['x_image'] != fa['x_image']
    with pytest.warns(FeatureMismatchWarning, match='x_image differs'):
        d.load_state_dict(a.state_dict())
    # MoMoK normalises rows as it reads them: the fingerprint says so
    _, m = _pair('momok', graphs)
    assert m.feature_fingerprint()['x_image'] == fa['x_image'] + '+l2'


@pytest.mark.parametrize('name', sorted(MODELS_UNDER_TEST))
def test_batches_read_only_the_rows_they_touch(name, graphs, monkeypatch):
    a, b = _pair(name, graphs)
    rep = b.representation
    read = {}
    for m in ('image', 'text'):
        x = getattr(rep, f'x_{m}')
        original = x._read_sorted
        monkeypatch.setattr(x, '_read_sorted', lambda ids, o=original, m=m: (
            read.setdefault(m, []).extend(ids.tolist()), o(ids))[1], raising=False)
    h, r, t = torch.tensor([1, 1, 4]), torch.tensor([0, 1, 2]), torch.tensor([4, 9, 1])
    from torch_mmkg.loader import Negatives
    neg = Negatives(torch.tensor([[2, 9], [3, 3], [11, 1]]), torch.tensor([False, True, False]))
    with full_read_limit(0):  # nothing may be read whole
        torch.manual_seed(0)
        loss = b.loss(h, r, t, neg)
        loss.backward()
    touched = {1, 2, 3, 4, 9, 11}
    for m in ('image', 'text'):
        assert set(read[m]) == touched, (m, read[m])  # the rows of the batch, no other
        if name == 'native':  # one pass over the distinct entities of the batch
            assert sorted(read[m]) == sorted(touched)
    torch.manual_seed(0)
    assert torch.equal(loss, a.loss(h, r, t, neg))  # as in memory


def test_a_lookup_representation_reads_only_the_batch(graphs):
    r"""Without an encoder (a lookup) an in-memory representation hands out its whole table;
    on disk it reads the distinct entities of the batch instead."""
    _, disk = graphs
    x = disk[ENTITY].x_image
    rep = EntityRepresentation(20, 6, {'image': x}, projection_layers=0)
    assert not rep.costly
    x.stats.reset()
    with full_read_limit(0):
        stack, mask, (i, j) = rep.unique(torch.tensor([5, 1]), torch.tensor([[5, 9]]))
    assert x.stats.rows == 3 and stack.shape == (3, 2, 6)
    assert torch.equal(stack[i.view(-1), 1], graphs[0][ENTITY].x_image[[5, 1]])
    assert torch.equal(stack[j.view(-1), 1], graphs[0][ENTITY].x_image[[5, 9]])
    # a batch with as many ids as entities: all of them within the limit, as in memory...
    many = torch.arange(5).repeat(5)
    x.stats.reset()
    stack, _, (i, ) = rep.unique(many)
    assert x.stats.rows == 20 and torch.equal(i, many) and stack.size(0) == 20
    # ... and above it only its distinct entities
    x.stats.reset()
    with full_read_limit(0):
        stack, _, (i, ) = rep.unique(many)
    assert x.stats.rows == 5 and stack.size(0) == 5
    assert torch.equal(stack[i, 1], graphs[0][ENTITY].x_image[many])


def test_evaluation_streams_entity_chunks(graphs, monkeypatch):
    a, b = _pair('lbmkgc', graphs)
    a.eval(), b.eval()
    # chunks of 7 entities (instead of ~16 MiB of features)
    monkeypatch.setattr(representation_module, 'DEFAULT_CHUNK_BYTES', 7 * (6 + 5) * 4)
    reads = []
    for m in ('image', 'text'):
        x = getattr(b.representation, f'x_{m}')
        original = x._read_runs
        monkeypatch.setattr(x, '_read_runs', lambda s, n, o=original: (reads.append(
            int(n.sum())), o(s, n))[1], raising=False)
    h, r, t = _triples()
    with torch.no_grad(), full_read_limit(0):
        assert b.representation.streams()
        got = b.score_tails(h, r)
        cache = b.prepare_scoring()
    assert max(reads) <= 7  # never more than a chunk at once
    with torch.no_grad():
        want = a.score_tails(h, r)
        stack, mask, _ = a.representation.forward_with_extras(None)
        expected = a.prepare_scoring()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for field, value in expected._asdict().items():
        if value is not None and field != 'extras':
            torch.testing.assert_close(getattr(cache, field), value, rtol=0, atol=1e-6)
    chunked, cmask, _ = b.representation.forward_chunked(chunk_size=3)
    torch.testing.assert_close(chunked, stack, rtol=0, atol=1e-6)
    assert torch.equal(cmask, mask)


def test_reading_everything_with_gradient_names_the_model(graphs):
    _, b = _pair('native', graphs)
    e, r = torch.tensor([0, 3]), torch.tensor([1, 2])
    target = torch.zeros(2, 20)
    with full_read_limit(0), pytest.raises(
            FeaturesTooLargeError, match=r"NATIVE needs the 'image' features of every entity "
                                         r".*regime='negative_sampling'"):
        b.loss_1n(e, r, target)
    b.loss_1n(e, r, target)  # within the limit it reads them whole
    with full_read_limit(0), pytest.raises(FeaturesTooLargeError,
                                           match='trainable features of'):
        _pair('momok', graphs, finetune_features=True)


def test_register_modalities_keeps_disk_features_on_disk(graphs):
    _, disk = graphs
    x = disk[ENTITY].x_image
    rep = EntityRepresentation(20, 4, {'image': x}, {'image': disk[ENTITY].mask_image})
    assert rep.x_image is x and 'x_image' not in dict(rep.named_buffers())
    assert 'x_image' not in rep.state_dict() and rep.disk_backed
    assert rep.disk_modalities == ['image'] and rep.disk_feature_bytes() == 20 * 6 * 4
    rep = rep.double()
    assert rep.x_image is x  # not moved or converted
    got = rep.features('image', torch.tensor([[3, 1]]))
    assert got.dtype == torch.float64 and got.shape == (1, 2, 6)
    assert torch.equal(got, graphs[0][ENTITY].x_image[torch.tensor([[3, 1]])].double())
    assert torch.equal(rep.features('image'), graphs[0][ENTITY].x_image.double())
    trainable = EntityRepresentation(20, 4, {'image': x}, trainable_features=True)
    assert isinstance(trainable.x_image, torch.nn.Parameter)
    assert torch.equal(trainable.x_image.detach(), graphs[0][ENTITY].x_image)
    copy.deepcopy(rep).features('image', torch.tensor([0]))


def test_register_modalities_checks_disk_features(graphs, tmp_path):
    _, disk = graphs
    x = disk[ENTITY].x_image
    with pytest.raises(ValueError, match=r"features of 'image' must be \[21, F\]"):
        EntityRepresentation(21, 4, {'image': x})
    with pytest.raises(ValueError, match=r"mask of 'image' must be a \[20\] bool tensor"):
        EntityRepresentation(20, 4, {'image': x}, {'image': torch.ones(20)})
    y = torch.ones(20, 3)
    y[7, 1] = float('nan')
    bad = write_array(y, str(tmp_path / 'nan.npy'))
    with pytest.raises(ValueError, match=r"features of 'bad' contain NaN or Inf \(rows \[7\]"):
        EntityRepresentation(20, 4, {'bad': bad})
    with pytest.raises(ValueError, match='read through an EntityRepresentation'):
        register_modalities(torch.nn.Module(), 20, {'image': x})


@withCUDA
def test_on_the_device_rows_go_to_the_model(device, graphs):
    r"""On an accelerator the rows are read on the host and moved to the model's device; the
    scores are those of the in-memory model on the device."""
    a, b = _pair('native', graphs)
    a, b = a.to(device).eval(), b.to(device).eval()
    assert isinstance(b.representation.x_image, DiskFeatures)
    h, r, t = (v.to(device) for v in _triples())
    with torch.no_grad():
        assert torch.equal(a(h, r, t), b(h, r, t))
        assert torch.equal(a.score_tails(h, r), b.score_tails(h, r))
    assert b.representation.features('image', h).device == h.device


def test_instances_on_disk(tmp_path):
    r"""Several images per entity, [N, K, F] on disk, through IKRL's attention."""
    from torch_mmkg.nn.models.ikrl import IKRL
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, 4, generator=g)
    mask = torch.rand(20, 3, generator=g) > 0.3
    f = write_array(x, str(tmp_path / 'inst.npy'))
    models = []
    for feats in (x, f):
        torch.manual_seed(0)
        models.append(IKRL(20, 3, 4, {'image': feats}, {'image': mask}).eval())
    h, r, t = _triples()
    with torch.no_grad():
        assert torch.equal(models[0](h, r, t), models[1](h, r, t))
        assert torch.equal(models[0].score_tails(h, r), models[1].score_tails(h, r))
