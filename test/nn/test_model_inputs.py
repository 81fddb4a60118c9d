r"""Bad model inputs get clear errors: constructor arguments and the index tensors of every
entry point, for every model of :data:`torch_mmkg.nn.MODELS` (a model added there is
covered without touching this file)."""
import inspect
import math
import re
from functools import lru_cache

import numpy as np
import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import Negatives
from torch_mmkg.nn import MODELS
from torch_mmkg.nn.models._modalities import features_from_data
from torch_mmkg.nn.validation import IndexSpec, check_indices
from torch_mmkg.testing import model_test_kwargs

D = 4


@lru_cache(maxsize=None)
def graph():
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4, num_triples=600,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]
    return features_from_data(data)


N, R = 60, 3


def construct(cls, num_nodes=N, num_relations=R, hidden_channels=D, **kwargs):
    r"""Builds any model: multi-modal ones (with a :obj:`features` argument) get the two
    modalities of the fake graph."""
    if 'features' in inspect.signature(cls).parameters:
        _, _, features, masks = graph()
        kwargs = dict(features=features, masks=masks, **kwargs)
    kwargs = {**model_test_kwargs(MODELS.lookup(cls), hidden_channels), **kwargs}
    return cls(num_nodes, num_relations, hidden_channels, **kwargs)


@lru_cache(maxsize=None)
def model(name):
    torch.manual_seed(0)
    return construct(MODELS[name]).eval()


# Constructor arguments ######################################################################

SIZES = ('num_nodes', 'num_relations', 'hidden_channels')
BAD_SIZES = [0, -3, 2.5, True, '8', None]


@pytest.mark.parametrize('value', BAD_SIZES, ids=repr)
@pytest.mark.parametrize('arg', SIZES)
@pytest.mark.parametrize('name', list(MODELS))
def test_bad_size_rejected(name, arg, value):
    cls = MODELS[name]
    msg = (rf"^{cls.__name__}: {arg} must be a positive integer, got "
           rf"{re.escape(repr(value))}$")
    with pytest.raises(ValueError, match=msg):
        construct(cls, **{arg: value})


NAN, INF = float('nan'), float('inf')
#: Per hyper-parameter name, values that no model may accept. Every numeric or string
#: argument of a registered model must be listed here or in FREE.
BAD_HYPERPARAMETERS = {
    'margin': [NAN, INF, '9'],
    'epsilon': [NAN, -1e3],
    'p_norm': [0.0, -1.0, NAN],
    'adversarial_temperature': [-1.0, NAN, INF],
    'regularization_weight': [-1e-3, NAN, INF],
    'regularization': ['l1'],
    'relation_channels': [0, 2.5, True],
    'input_dropout': [1.0, -0.1, NAN],
    'hidden_dropout1': [1.0, -0.1],
    'hidden_dropout2': [1.0, -0.1],
    'fusion_dropout': [1.0, -0.1],
    'label_smoothing': [1.0, -0.1, NAN],
    'num_experts': [0, 2.5, True],
    'num_heads': [0, -1, 2.5],
    'club_weight': [-1.0, NAN],
    'noise_epsilon': [-0.5, NAN],
    'projection_layers': [0, 3, True, 1.5],
    'fusion': ['nope'],
    'objective': ['hinge'],
    'regularization_style': ['raw', None],
    'dropout_target': ['weights', None],
    'club_pairs': ['one'],
    'init': ['xavier'],
    'alignment_weight': [-0.1, NAN, INF],
    'alignment_temperature': [0.0, -1.0, INF, NAN],
    'loss_aggregate': ['sum'],
    'base': ['transe', None],
    'literal_presence': ['mask', None],
    'literal_normalization': ['zscore', None],
    'test_energy': ['image_only', None],
    'aggregate': ['max', None],
    'score_margin': [NAN, INF, '1'],
    'activation': ['relu', None],
    'ranking_weight': [-0.1, NAN, INF],
    'reconstruction_weight': [-1.0, NAN, '1'],
    'modality_channels': [0, 2.5, True],
    'missing': ['zeros', None],
    'feature_encoder': ['pool', None],  # IMF
    'decision': ['vote', None],
    'contrastive_weight': [-0.1, NAN, INF],
    'alpha': [-0.1, 1.5, NAN],  # MoSE
    'scale': [0.0, -1.0, NAN],
    'init_size': [0.0, -1.0, NAN],
}
#: Arguments with no numeric constraint to check here (flags, objects, name lists).
FREE = {'loss', 'features', 'masks', 'scorers'}
FREE |= {'train_edge_index'}  # KBLN: the training triples' heads and tails
# VISTA and MyGO (transformers; the modality inputs are objects)
BAD_HYPERPARAMETERS.update({
    'feedforward_channels': [0, 2.5, True],
    'num_entity_layers': [0, 2.5, True],
    'num_relation_layers': [0, -1, True],
    'num_decoder_layers': [0, 2.5, True],
    'dropout': [1.0, -0.1, NAN],
    'structure_dropout': [1.0, -0.1, NAN],
    'modality_dropout': [1.0, -0.1, NAN],
    'max_instances': [0, 2.5, True],
    'instance_order': ['random', None],
    'fgc_weight': [-0.1, NAN, INF],
    'fgc_temperature': [0.0, -1.0, NAN],
    'fgc_entities': [0, 2.5, True],
    'scorer': ['distmult', None],
    'tucker_dropout': [(1.0, 0.0, 0.0), (0.1, 0.1)],
})
FREE |= {'relation_features', 'relation_masks', 'tokens', 'token_masks', 'token_tables'}
# RSME and OTKGE
BAD_HYPERPARAMETERS.update({
    'beta': [-0.1, 1.5, NAN],
    'combine': ['sum', None],
    'similarity': ['text', None],
    'init_scale': [0.0, -1.0, NAN],
    'regularize': ['all', None],
    'modality_weights': [{'image': 0.9, 'text': 0.9}, {'image': 0.1}, [0.1],
                         {'image': -0.1, 'text': 0.1}],
    'ot_entities': [0, 2.5, True, 'some'],
    'ot_epsilon': [0.0, -1.0, NAN],
    'ot_max_iter': [0, 2.5, True],
    'ot_tol': [-1.0, NAN],
})
FREE |= {'forget_gate'}  # RSME: a tensor (checked in test/nn/models/test_rsme.py)
# MKGformer: the checkpoints, tokenizer, texts and images are objects, checked in
# test/nn/models/test_mkgformer.py
BAD_HYPERPARAMETERS.update({
    'num_fusion_layers': [0, 2.5, True],
    'prefix': ['image', None],
    'prefix_from': ['next_layer', None],
    'vision_positions': ['yes', None],
    'max_length': [0, 2.5, True],
})
FREE |= {'text_model', 'vision_model', 'tokenizer', 'descriptions', 'relation_texts', 'images',
         'image_mask'}


def hyperparameters(cls):
    params = list(inspect.signature(cls).parameters.values())[3:]
    return [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]


@pytest.mark.parametrize('name', list(MODELS))
def test_every_hyperparameter_has_a_rule(name):
    # A model (or an argument) added later must say which values are nonsense.
    missing = [p.name for p in hyperparameters(MODELS[name])
               if p.name not in BAD_HYPERPARAMETERS and p.name not in FREE
               and not isinstance(p.default, bool)]
    assert not missing, f"add rules for {missing} to BAD_HYPERPARAMETERS (or FREE)"


def hyperparameter_cases():
    for name, cls in MODELS.items():
        for p in hyperparameters(cls):
            for value in BAD_HYPERPARAMETERS.get(p.name, []):
                yield pytest.param(name, p.name, value, id=f'{name}-{p.name}-{value!r}')
    # The bounds that depend on the model or on another argument.
    for name in ('tbkgc', 'vbkgc'):  # the margin ranking loss needs lambda > 0
        yield pytest.param(name, 'margin', 0.0, id=f'{name}-margin-0')
        yield pytest.param(name, 'p_norm', 0.5, id=f'{name}-p_norm-0.5')
    for name in ('rotate', 'pairre', 'native', 'lbmkgc'):  # (margin + epsilon) / d > 0
        margin = inspect.signature(MODELS[name]).parameters['margin'].default
        yield pytest.param(name, 'epsilon', -margin, id=f'{name}-epsilon--margin')
    yield pytest.param('transe', 'epsilon', -9.0, id='transe-epsilon--margin')
    yield pytest.param('adamf', 'epsilon', -12.0, id='adamf-epsilon--margin')  # NATIVE's rule


@pytest.mark.parametrize('name,arg,value', list(hyperparameter_cases()))
def test_bad_hyperparameter_rejected(name, arg, value):
    cls = MODELS[name]
    msg = rf"^{cls.__name__}: {arg} must be .*got {re.escape(repr(value))}$"
    with pytest.raises(ValueError, match=msg):
        construct(cls, **{arg: value})


@pytest.mark.parametrize('name', list(MODELS))
def test_valid_arguments_still_accepted(name):
    cls = MODELS[name]
    # The smallest sizes, as NumPy integers or 0-dim tensors, and the boundary values.
    m = construct(cls, np.int64(N), torch.tensor(R), 1)
    assert (m.num_nodes, m.num_relations, m.hidden_channels) == (N, R, 1)
    assert all(type(v) is int for v in (m.num_nodes, m.num_relations, m.hidden_channels))
    boundary = {'adversarial_temperature': 0.0, 'regularization_weight': 0.0,
                'input_dropout': 0.0, 'label_smoothing': 0.0, 'club_weight': 0.0,
                'noise_epsilon': 0.0, 'projection_layers': 1, 'num_experts': 1,
                'relation_channels': 1, 'margin': 1.0, 'alignment_weight': 0.0}
    names = {p.name for p in hyperparameters(cls)}
    construct(cls, **{k: v for k, v in boundary.items() if k in names})


# Index arguments ############################################################################

def relation_high(m, entry):
    r"""The valid relation ids of an entry point: :math:`[0, 2R)` where inverse relations
    are addressed directly, or 1-N queries (:math:`r + R`: the head query of a model without
    inverse relations), else :math:`[0, R)`."""
    both = entry in ('forward', 'score_tails', 'loss_1n') and m.inverse_relations
    return 2 * m.num_relations if both or entry == 'loss_1n' else m.num_relations


def one_answer(num_queries, num_nodes):
    r"""1-N targets with one answer per query (entity 0), as a loader yields them."""
    target = torch.zeros(num_queries, num_nodes)
    target[:, 0] = 1.0
    return target


#: entry point -> its index arguments (in call order), and how to call it.
ENTRIES = {
    'forward': (('head_index', 'rel_type', 'tail_index'), lambda m, a: m(*a)),
    'score_tails': (('head_index', 'rel_type'), lambda m, a: m.score_tails(*a)),
    'score_heads': (('rel_type', 'tail_index'), lambda m, a: m.score_heads(*a)),
    'loss': (('head_index', 'rel_type', 'tail_index'), lambda m, a: m.loss(*a)),
    'loss_1n': (('entity_index', 'rel_type'),
                lambda m, a: m.loss_1n(*a, one_answer(a[0].numel(), m.num_nodes))),
    'test': (('head_index', 'rel_type', 'tail_index'),
             lambda m, a: m.test(*a, log=False)),
    'random_sample': (('head_index', 'rel_type', 'tail_index'),
                      lambda m, a: m.random_sample(*a)),
    'loader': (('head_index', 'rel_type', 'tail_index'),
               lambda m, a: m.loader(*a, num_negatives=2)),
    'loader_1n': (('head_index', 'rel_type', 'tail_index'), lambda m, a: m.loader_1n(*a)),
}


def valid_args(m, entry, n=5):
    gen = torch.Generator().manual_seed(0)
    out = []
    for arg in ENTRIES[entry][0]:
        high = relation_high(m, entry) if arg == 'rel_type' else m.num_nodes
        out.append(torch.randint(0, high, (n, ), generator=gen))
    return out


@lru_cache(maxsize=None)
def supports(name, entry):
    r"""Whether the model can be called through the entry point at all (negative-sampling
    models have no 1-N loss and vice versa: they raise a :class:`RuntimeError`)."""
    m = model(name)
    try:
        ENTRIES[entry][1](m, valid_args(m, entry))
    except RuntimeError:
        return False
    return True


def entry_cases():
    for name in MODELS:
        for entry, (args, _) in ENTRIES.items():
            for arg in args:
                yield pytest.param(name, entry, arg, id=f'{name}-{entry}-{arg}')


@pytest.mark.parametrize('name,entry,arg', list(entry_cases()))
def test_bad_index_rejected(name, entry, arg):
    if not supports(name, entry):
        pytest.skip(f'{name} has no {entry}')
    m = model(name)
    args, call = ENTRIES[entry]
    i = args.index(arg)
    kind = 'relation' if arg == 'rel_type' else 'entity'
    high = relation_high(m, entry) if arg == 'rel_type' else m.num_nodes
    valid = valid_args(m, entry)
    for bad in (high, -1):  # too large, negative: the id and its position are named
        a = list(valid)
        a[i] = a[i].clone()
        a[i][3] = bad
        msg = (rf"^{entry}: {arg} holds {kind} id {bad} at position 3, outside "
               rf"\[0, {high}\)")
        with pytest.raises(ValueError, match=msg):
            call(m, a)
    for bad in (valid[i].float(), valid[i] % 2 == 1):  # floats are not truncated, bools
        a = list(valid)                                  # not read as masks
        a[i] = bad
        msg = (rf"^{entry}: {arg} must be an integer tensor of {kind} ids in "
               rf"\[0, {high}\), got a {re.escape(str(bad.dtype))} tensor$")
        with pytest.raises(ValueError, match=msg):
            call(m, a)


@pytest.mark.parametrize('name', list(MODELS))
def test_valid_indices_still_work(name):
    m = model(name)
    for entry in ('forward', 'score_tails', 'score_heads', 'loss_1n'):
        if not supports(name, entry):
            continue
        args, call = ENTRIES[entry]
        # The largest valid ids.
        top = [torch.full((2, ), (relation_high(m, entry) if a == 'rel_type' else N) - 1)
               for a in args]
        with torch.no_grad():
            ref = call(m, top)
            assert torch.isfinite(ref).all()
            # Any integer dtype (F.embedding takes only int32/int64, and indexing reads
            # uint8 as a mask): the same scores as int64.
            for dtype in (torch.int32, torch.int16, torch.uint8):
                assert torch.allclose(call(m, [x.to(dtype) for x in top]), ref)
            # Empty index tensors, which worked before: empty scores.
            out = call(m, [torch.empty(0, dtype=torch.long) for _ in args])
        if entry == 'forward':
            assert out.shape == (0, )
        elif entry != 'loss_1n':
            assert out.shape == (0, N)


def test_index_message_details():
    m = model('rotate')
    h = torch.zeros(2, 3, dtype=torch.long)
    h[1, 2] = 61
    with pytest.raises(ValueError, match=r'^forward: head_index holds entity id 61 at '
                       r'position \(1, 2\), outside \[0, 60\)$'):
        m(h, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r'^forward: rel_type holds relation id 3, '
                       r'outside \[0, 3\)$'):  # a 0-dim tensor has no position
        m(torch.tensor(0), torch.tensor(3), torch.tensor(0))
    with pytest.raises(TypeError, match='head_index must be a tensor'):
        m.score_tails([0, 1], torch.tensor([0, 1]))
    h, r, t = valid_args(m, 'loss', n=4)
    index = torch.zeros(4, 2, dtype=torch.long)
    index[2, 1] = 60
    with pytest.raises(ValueError, match=r'^loss: negatives.index holds entity id 60 at '
                       r'position \(2, 1\), outside \[0, 60\)$'):
        m.loss(h, r, t, Negatives(index, torch.zeros(4, dtype=torch.bool)))
    # With inverse relations, heads are scored through the inverse: score_heads takes the
    # R relations, score_tails all 2R.
    tucker = model('tucker')
    with pytest.raises(ValueError, match=r'rel_type holds relation id 3 at position 0, '
                       r'outside \[0, 3\) \(their inverses r \+ 3 are applied internally\)$'):
        tucker.score_heads(torch.tensor([3]), torch.tensor([0]))
    assert tucker.score_tails(torch.tensor([0]), torch.tensor([5])).shape == (1, N)


def test_index_checks_skipped_while_compiling(monkeypatch):
    spec = IndexSpec('head_index', torch.tensor([0, 99]), 60)
    with pytest.raises(ValueError, match='outside'):
        check_indices('forward', spec)
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    out, = check_indices('forward', spec)  # the range needs the data: left to the kernels
    assert out is spec.index
    with pytest.raises(ValueError, match='integer tensor'):  # the dtype does not
        check_indices('forward', spec._replace(index=spec.index.float()))


def test_test_checks_once(monkeypatch):
    # test() checks the whole input, then scores it in batches without checking again.
    import torch_mmkg.nn.kge.base as base
    m = model('distmult')
    calls = []
    real_check = base.check_indices
    monkeypatch.setattr(base, 'check_indices', lambda *a: calls.append(a[0]) or real_check(*a))
    h, r, t = valid_args(m, 'test', n=20)
    mr, mrr, hits = m.test(h, r, t, batch_size=4, log=False)
    assert calls == ['test'] and math.isfinite(mrr)
    assert m._index_checks_on  # on again afterwards
