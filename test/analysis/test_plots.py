import json
import math
import sys
import warnings

import pytest
import torch

from torch_mmkg.analysis import (EntityModalityWeights, RobustnessCurve, TrainingCurves,
                                 entity_modality_weights, expert_weights, plot_expert_weights,
                                 plot_robustness_curves, plot_training_curves,
                                 robustness_curve, training_curves)
from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.data.mmkg import ENTITY
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import LBMKGC, MoMoK, TransE
from torch_mmkg.transforms import DropModality

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def data():
    return FakeMMKGDataset(num_entities=24, num_relations=3, num_clusters=3, num_triples=120,
                           modalities={'image': 5, 'text': 4}, seed=3)[0]


@pytest.fixture(scope='module')
def lbmkgc(data):
    torch.manual_seed(0)
    model = LBMKGC.from_data(data, 4)
    with torch.no_grad():  # spread the weights as training would
        model.fusion.modal.v.normal_(0, 2)
        model.fusion.gate.normal_()
    return model


@pytest.fixture(scope='module')
def momok(data):
    torch.manual_seed(0)
    model = MoMoK.from_data(data, 8).eval()
    with torch.no_grad():
        for ex in model.experts.values():
            ex.w_gate.normal_()
        model.rel_temperature.normal_()
    return model


def _figure():
    pytest.importorskip('matplotlib')  # an optional extra ([plot], included in [test])
    from matplotlib.figure import Figure
    return Figure


def _png(path):
    raw = path.read_bytes()
    assert raw.startswith(b'\x89PNG') and len(raw) > 1000


def _widths(container):
    return [p.get_width() for p in container.patches]


def _stacked(containers):
    r"""Each bar starts where the previous segment of its row ended."""
    ends = {}
    for c in containers:
        for p in c.patches:
            y = round(p.get_y(), 6)
            assert p.get_x() == pytest.approx(ends.get(y, 0.0), abs=1e-6)
            ends[y] = p.get_x() + p.get_width()
    return sorted(ends.values())


def evaluate(model, data, split='test'):
    known = KnownTriples.from_data(data, 'all')
    return RankingEvaluator(known).evaluate(model, *get_triples(data, split)).metrics()


# MoMoK (Figure 5) ###########################################################################

def test_expert_weights_plot_draws_the_means(momok, data, tmp_path):
    Figure = _figure()
    res = expert_weights(momok, data)
    fig = res.plot(str(tmp_path / 'experts.png'))
    _png(tmp_path / 'experts.png')
    S, K = len(res.modalities), res.gates.size(-1)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 + S
    # default rows: the relations with the most queries, most first (ties by id)
    count = res.count.tolist()
    rows = sorted(range(len(count)), key=lambda i: (-count[i], i))[:10]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [res.relation_names[i].replace('^-1', '\u207b\u00b9') for i in rows]
    assert any(label.endswith('\u207b\u00b9') for label in labels)  # inverses shown
    joint = fig.axes[0].containers
    assert len(joint) == S
    for j, c in enumerate(joint):  # one stacked segment per modality
        assert _widths(c) == pytest.approx(res.joint[rows, j].tolist(), abs=1e-6)
    assert _stacked(joint) == pytest.approx([1.0] * len(rows), abs=1e-5)
    for s in range(S):
        gates = fig.axes[1 + s].containers
        assert len(gates) == K
        for k, c in enumerate(gates):
            assert _widths(c) == pytest.approx(res.gates[rows, s, k].tolist(), abs=1e-6)
        assert _stacked(gates) == pytest.approx([1.0] * len(rows), abs=1e-5)
        assert fig.axes[1 + s].get_title().endswith(res.modalities[s])

    # chosen relations by name or id, and from the JSON summary
    R = data.num_relations
    fig = plot_expert_weights(json.loads(json.dumps(res.to_dict())),
                              relations=[f'{res.relation_names[1]}', R + 2])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        res.relation_names[1], res.relation_names[2] + '\u207b\u00b9']
    assert _widths(fig.axes[2].containers[0]) == pytest.approx(
        res.gates[[1, R + 2], 1, 0].tolist(), abs=1e-6)
    with pytest.raises(ValueError, match='unknown relation'):
        res.plot(relations=['nope'])
    with pytest.raises(TypeError, match='ExpertWeights'):
        plot_expert_weights([1, 2])


def test_expert_weights_plot_without_joint_and_missing_modality(data, tmp_path):
    _figure()
    torch.manual_seed(1)
    model = MoMoK.from_data(data, 8, scorers=['structure', 'text']).eval()
    res = expert_weights(model, data)
    assert res.joint is None
    # a relation whose query entities all lack text: NaN gates, no bar
    res.gates[0, res.modalities.index('text')] = math.nan
    fig = res.plot(str(tmp_path / 'no_joint.png'), relations=[0, 1])
    assert len(fig.axes) == len(res.modalities) == 2
    text = fig.axes[1]
    assert all(len(c.patches) == 1 for c in text.containers)  # relation 1 only
    assert any('no queries' in t.get_text() for t in text.texts)


# LBMKGC (Figure 4) ##########################################################################

def test_entity_modality_weights_match_naive_softmax(lbmkgc, data):
    model = lbmkgc.train()
    res = entity_modality_weights(model, data, batch_size=7)
    assert model.training  # restored
    ent = data[ENTITY]
    assert res.modalities == ['image', 'text']
    assert torch.equal(res.mask, torch.stack([ent.mask_image, ent.mask_text], 1))
    v = model.fusion.modal.v
    model.eval()
    with torch.no_grad():
        for e in range(data[ENTITY].num_nodes):
            stack, mask = model.modality_stack(torch.tensor([e]))
            present = [j for j in range(2) if mask[0, 1 + j]]
            logits = {j: float(v @ torch.tanh(stack[0, 1 + j])) for j in present}
            z = sum(math.exp(x) for x in logits.values())
            for j in range(2):
                want = math.exp(logits[j]) / z if j in present else 0.0
                assert math.isclose(float(res.weights[e, j]), want, abs_tol=1e-6)
    same = entity_modality_weights(model)
    assert torch.allclose(same.weights, res.weights) and same.entity_names[3] == 'e3'

    # statistics over the entities that have the modality only
    summary, hist = res.summary(), res.histogram(10)
    for j, m in enumerate(res.modalities):
        x = [float(res.weights[e, j]) for e in range(24) if res.mask[e, j]]
        assert summary[m]['count'] == len(x) == int(res.mask[:, j].sum()) < 24
        assert summary[m]['mean'] == pytest.approx(sum(x) / len(x))
        assert summary[m]['min'] == pytest.approx(min(x))
        assert hist[m] == [sum(1 for w in x if min(int(w * 10), 9) == b) for b in range(10)]
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    lacking = int((~res.mask[:, 0]).nonzero()[0])
    assert d['entities'][f'e{lacking}'][0] is None
    assert d['summary'] == summary


def test_entity_modality_weights_plot(lbmkgc, data, tmp_path):
    Figure = _figure()
    res = entity_modality_weights(lbmkgc, data)
    fig = res.plot(str(tmp_path / 'lbmkgc.png'), bins=10)
    _png(tmp_path / 'lbmkgc.png')
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_hist, ax_bar = fig.axes
    hist = res.histogram(10)
    bars = [p for p in ax_hist.patches]
    assert len(bars) == 20  # 10 bins per modality
    assert [p.get_height() for p in bars] == hist['image'] + hist['text']
    rows = res.select(6)
    assert len(rows) == 6 and all(bool(res.mask[i].all()) for i in rows)
    order = res.weights[rows, 0]  # spread from the smallest to the largest image weight
    full = res.mask.all(1)
    assert float(order[0]) == float(res.weights[full, 0].min())
    assert float(order[-1]) == float(res.weights[full, 0].max())
    assert [t.get_text() for t in ax_bar.get_yticklabels()] == [f'e{i}' for i in rows]
    for j, c in enumerate(ax_bar.containers):
        assert _widths(c) == pytest.approx(res.weights[rows, j].tolist(), abs=1e-6)
    assert _stacked(ax_bar.containers) == pytest.approx([1.0] * 6, abs=1e-5)
    fig = res.plot(entities=['e0', 5])
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ['e0', 'e5']
    with pytest.raises(ValueError, match='unknown entity'):
        res.plot(entities=['nope'])


def test_entity_modality_weights_errors(data):
    with pytest.raises(TypeError, match='modality_weights'):
        entity_modality_weights(TransE(24, 3, 4))
    model = LBMKGC.from_data(data, 4)
    with pytest.raises(ValueError, match='batch_size'):
        entity_modality_weights(model, batch_size=0)
    with pytest.raises(ValueError, match='entity names'):
        entity_modality_weights(model, entity_names=['a'])


# Robustness curves ##########################################################################

def test_robustness_curve_equals_models_built_on_dropped_graphs(lbmkgc, data):
    from torch_mmkg.nn import FeatureMismatchWarning
    rates = [0.0, 0.5, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter('error', FeatureMismatchWarning)  # expected ones are silenced
        curve = robustness_curve(lbmkgc, data, rates, 'image', label='LBMKGC')
    assert curve.rates == rates and curve.modalities == ['image']
    assert curve.metrics[0] == evaluate(lbmkgc, data)  # rate 0: the untouched graph
    state = lbmkgc.state_dict()
    for rate, got in zip(rates[1:], curve.metrics[1:]):
        dropped = DropModality(rate, modalities=['image'], relative_to='present',
                               seed=0)(data)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FeatureMismatchWarning)
            net = LBMKGC.from_data(dropped, 4)
            net.load_state_dict(state)
        assert got == evaluate(net, data if rate == 0 else dropped)
    assert curve.mrr != [curve.mrr[0]] * 3  # the drop changes the ranking
    assert int(data[ENTITY].mask_image.sum()) == 19  # the input graph untouched
    assert 'dropped_image' not in data[ENTITY]

    # the same through an explicit builder, or a builder plus weights
    def build(g):
        return LBMKGC.from_data(g, 4)
    assert robustness_curve(lbmkgc, data, rates, 'image', build=build).metrics == curve.metrics
    by_factory = robustness_curve(build, data, rates, 'image', state_dict=state)
    assert by_factory.metrics == curve.metrics and by_factory.label == 'build'
    d = json.loads(json.dumps(curve.to_dict()))
    assert RobustnessCurve.from_dict(d).metrics == curve.metrics
    assert d['settings'] == {'split': 'test', 'level': 'entity', 'fill': 'zeros',
                             'relative_to': 'present', 'seed': 0}


def test_robustness_curve_resets_trainable_feature_rows(data):
    # MoMoK fine-tunes its feature tables (they are in the state dict); without masking the
    # rows of missing modalities go through the experts, so their values matter
    torch.manual_seed(2)
    trained = MoMoK.from_data(data, 8, mask_missing=False).eval()
    with torch.no_grad():
        for ex in trained.experts.values():
            ex.w_gate.normal_()
        trained.representation.x_text.add_(torch.randn_like(trained.representation.x_text))
    state = trained.state_dict()
    assert 'representation.x_text' in state
    curve = robustness_curve(trained, data, [0.0, 0.5], 'text', level='modality',
                             fill='random', seed=4,
                             build=lambda g: MoMoK.from_data(g, 8, mask_missing=False))
    assert curve.metrics[0] == evaluate(trained, data)
    dropped = DropModality(0.5, level='modality', modalities=['text'], fill='random',
                           relative_to='present', seed=4)(data)
    net = MoMoK.from_data(dropped, 8, mask_missing=False)
    fresh = net.representation.x_text.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        net.load_state_dict(state)
    leaked = evaluate(net, dropped)  # the trained rows of the dropped text, kept
    rows = data[ENTITY].mask_text & ~dropped[ENTITY].mask_text
    assert rows.sum() == round(0.5 * int(data[ENTITY].mask_text.sum()))
    with torch.no_grad():
        net.representation.x_text[rows] = fresh[rows]
    assert curve.metrics[1] == evaluate(net, dropped) != leaked


def test_robustness_curve_custom_transform_and_plot(lbmkgc, data, tmp_path):
    Figure = _figure()
    calls = []

    def noise(rate):
        calls.append(rate)
        return DropModality(rate, modalities=['text'], relative_to='present', seed=1)
    a = robustness_curve(lbmkgc, data, [0.0, 0.25, 0.75], transform=noise, label='text')
    assert calls == [0.25, 0.75] and a.settings == {'split': 'test', 'transform': 'noise'}
    b = robustness_curve(lbmkgc, data, [0.0, 0.5], 'image', split='val', label='image')
    assert b.metrics[0] == evaluate(lbmkgc, data, 'val')
    fig = a.plot(str(tmp_path / 'robustness.png'), others=[b])
    _png(tmp_path / 'robustness.png')
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == a.rates and list(lines[0].get_ydata()) == a.mrr
    assert list(lines[1].get_ydata()) == b.mrr
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ['text', 'image']
    fig = plot_robustness_curves([b.to_dict()], metric='hits@10')
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == b.metric('hits@10')
    assert 'Hits@10' in fig.axes[0].get_ylabel()
    assert 'share of present image' in fig.axes[0].get_xlabel()
    with pytest.raises(ValueError, match='unknown metric'):
        b.metric('auc')


def test_robustness_curve_errors(lbmkgc, data):
    with pytest.raises(ValueError, match='rates'):
        robustness_curve(lbmkgc, data, [0.0, 1.5])
    with pytest.raises(ValueError, match='rates'):
        robustness_curve(lbmkgc, data, [])
    with pytest.raises(ValueError, match='not in the graph'):
        robustness_curve(lbmkgc, data, [0.5], 'audio')
    other = LBMKGC.from_data(data, 4, margin=6.0)  # not the defaults: cannot be guessed
    with pytest.raises(ValueError, match='build='):
        robustness_curve(other, data, [0.5], 'image')
    with pytest.raises(TypeError, match='build='):
        robustness_curve(TransE(24, 3, 4), data, [0.5])
    with pytest.raises(TypeError, match='callable'):
        robustness_curve(3, data, [0.5])
    with pytest.raises(ValueError, match='not both'):
        robustness_curve(lambda g: lbmkgc, data, [0.5], build=lambda g: lbmkgc)
    with pytest.raises(ValueError, match='already has'):  # rates below what is missing
        robustness_curve(lbmkgc, data, [0.1], 'image', relative_to='all')


# Training curves ############################################################################

def _records():
    out = []
    for e in range(1, 7):
        rec = {'epoch': e, 'loss': 2.0 / e, 'seconds': 0.1, 'elapsed_train_seconds': 0.1 * e}
        if e % 2 == 0:
            rec['val'] = {'mrr': [0.2, 0.35, 0.3][e // 2 - 1], 'mr': [9.0, 7.0, 8.0][e // 2 - 1],
                          'hits@1': 0.1, 'hits@3': 0.2, 'hits@10': 0.5, 'count': 24}
            rec['val_seconds'] = 0.01
        out.append(rec)
    return out


def test_training_curves_from_records_and_run_directories(tmp_path):
    records = _records()
    curves = training_curves(records)
    assert curves.epochs == [1, 2, 3, 4, 5, 6]
    assert curves.loss == [r['loss'] for r in records]
    assert curves.val_epochs == [2, 4, 6]
    assert curves.val['mrr'] == [0.2, 0.35, 0.3] and curves.val['mr'] == [9.0, 7.0, 8.0]
    assert curves.best('mrr') == (4, 0.35) and curves.best('mr') == (4, 7.0)
    assert curves.best('auc') is None

    # history.jsonl of a resumed run (epochs 5-6 written twice) cut in its last line
    run = tmp_path / 'run'
    run.mkdir()
    resumed = records + [dict(records[4], loss=9.0), records[5]]
    text = ''.join(json.dumps(r) + '\n' for r in resumed) + '{"epoch": 7, "lo'
    (run / 'history.jsonl').write_text(text)
    (run / 'results.json').write_text(json.dumps({'history': records[:2]}))
    with pytest.warns(UserWarning, match='unreadable last line'):
        from_dir = training_curves(str(run))
    assert from_dir.epochs == curves.epochs and from_dir.loss[4] == 9.0
    assert from_dir.val == curves.val

    # results.json alone, given as the directory, the file or the loaded dict
    (run / 'history.jsonl').unlink()
    for source in (run, str(run / 'results.json'), {'history': records[:2]}):
        assert training_curves(source).epochs == [1, 2]
    with pytest.raises(FileNotFoundError):
        training_curves(str(tmp_path / 'missing'))
    (run / 'results.json').unlink()
    with pytest.raises(FileNotFoundError, match='history.jsonl'):
        training_curves(str(run))
    with pytest.raises(ValueError, match="'epoch'"):
        training_curves([{'loss': 1.0}])
    assert json.loads(json.dumps(curves.to_dict()))['val']['mrr'] == [0.2, 0.35, 0.3]


def test_training_curves_of_a_trainer_run(data, tmp_path):
    from torch_mmkg.training import TrainConfig, Trainer
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=3, batch_size=64, num_negatives=4, eval_every=2, progress=False,
                      val_split='val', device='cpu')
    results = Trainer(LBMKGC.from_data(data, 4), data, cfg, out_dir=str(tmp_path)).fit()
    curves = training_curves(str(tmp_path))  # history.jsonl or results.json, as written
    assert curves.epochs == [1, 2, 3] == [r['epoch'] for r in results['history']]
    assert curves.loss == pytest.approx([r['loss'] for r in results['history']])
    assert curves.val_epochs == [2, 3]
    assert curves.val['mrr'] == pytest.approx([r['val']['mrr'] for r in results['history']
                                               if 'val' in r])


def test_training_curves_plot(tmp_path):
    Figure = _figure()
    records = _records()
    fig = plot_training_curves(records, str(tmp_path / 'curves.png'))
    _png(tmp_path / 'curves.png')
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss, = fig.axes[0].get_lines()
    assert list(loss.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(loss.get_ydata()) == [r['loss'] for r in records]
    val, best = fig.axes[1].get_lines()
    assert list(val.get_xdata()) == [2, 4, 6] and list(val.get_ydata()) == [0.2, 0.35, 0.3]
    assert list(best.get_xdata()) == [4] and list(best.get_ydata()) == [0.35]
    fig = TrainingCurves.plot(training_curves(records), metric='mr')
    assert list(fig.axes[1].get_lines()[1].get_ydata()) == [7.0]
    assert fig.axes[1].get_ylabel() == 'validation MR'
    fig = plot_training_curves([{'epoch': 1, 'loss': 1.0}])  # no validation yet
    assert len(fig.axes[1].get_lines()) == 0
    assert any('no validation' in t.get_text() for t in fig.axes[1].texts)


# Without matplotlib #########################################################################

def test_plots_without_matplotlib(monkeypatch, lbmkgc, momok, data):
    experts = expert_weights(momok, data)
    weights = entity_modality_weights(lbmkgc, data)
    curve = RobustnessCurve('x', [0.0], [{'mrr': 0.1}])
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
    for draw in (experts.plot, lambda: plot_expert_weights(experts), weights.plot,
                 curve.plot, lambda: plot_robustness_curves([curve]),
                 lambda: plot_training_curves(_records())):
        with pytest.raises(ImportError, match=r'pip install matplotlib'):
            draw()
    # the numbers need no matplotlib
    assert isinstance(weights, EntityModalityWeights) and weights.to_dict()['summary']
    assert training_curves(_records()).val_epochs == [2, 4, 6]
