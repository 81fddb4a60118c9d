r"""The paper-size configs and their backbones (``benchmark/paper_configs.py``): every run
resolves to a valid config at the settings of its method's file, the table puts each number in
its row, and the orchestration (one process per run, ``--jobs`` at a time) gathers real runs on
small fake graphs, in process."""
import contextlib
import json
import os
import os.path as osp
import sys
import time
import traceback
import types

import pytest
import torch

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'benchmark')
sys.path.insert(0, ROOT)
pytest.importorskip('yaml')  # the configs are YAML files
paper_configs = pytest.importorskip('paper_configs')
graphs = pytest.importorskip('graphs')

from torch_mmkg.cli import build_model, load_config_file  # noqa: E402
from torch_mmkg.datasets import DATASETS, FakeMMKGDataset  # noqa: E402
from torch_mmkg.nn import MODELS  # noqa: E402
from torch_mmkg.training import TrainConfig  # noqa: E402

RUNS = paper_configs.RUNS
REAL_RESOLVE = paper_configs.resolve

#: Each backbone run and the method run whose settings it shares.
BACKBONES = {'tucker_mkgw_softmax': 'momok_mkgw', 'rotate_db15k': 'native_db15k',
             'transe_wn9': 'vbkgc_wn9', 'transe_wn9_exclude': 'vbkgc_wn9_exclude',
             'transe_mkgw_mmkrl': 'mmkrl_mkgw'}


@pytest.fixture(autouse=True)
def _keep_threads():
    r""":func:`paper_configs.main` sets torch's thread count for the whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _file(name):
    return load_config_file(osp.join(paper_configs.CONFIGS, RUNS[name].config))


def _fake_graph(modalities, num_entities=12, num_triples=20):
    return FakeMMKGDataset(num_entities=num_entities, num_relations=2, num_clusters=3,
                           num_triples=num_triples,
                           modalities={m: 3 + i for i, m in enumerate(modalities)}, seed=0)[0]


@pytest.mark.parametrize('name', list(RUNS))
def test_every_run_resolves(name):
    run, file = RUNS[name], _file(name)
    cfg = paper_configs.resolve(name)
    assert cfg['dataset'] == file['dataset'] and cfg['dataset'] in DATASETS
    assert cfg['model'] == (run.model or file['model'])
    assert MODELS.canonical(cfg['model']) in MODELS
    base = run.model_args if run.model_args is not None else file['model_args']
    assert cfg['model_args'] == {**base, **(run.model_update or {})}
    # the training section: the file's, with the run's updates; None removes a key
    train = TrainConfig.from_dict(cfg['train'])
    update = run.train_update or {}
    for key, value in file['train'].items():
        if key not in update:
            assert cfg['train'][key] == value, key
    for key, value in update.items():
        if value is None:
            assert key not in cfg['train'], key
        else:
            assert cfg['train'][key] == value and getattr(train, key) == value, key
    assert set(cfg['train']) == ((set(file['train']) | set(update))
                                 - {k for k, v in update.items() if v is None})
    # resolving again gives the same config, however the first one was changed
    cfg['model_args']['hidden_channels'] = -1
    cfg['train']['epochs'] = -1
    again = paper_configs.resolve(name)
    assert again['model_args'] == {**base, **(run.model_update or {})}
    assert again['train']['epochs'] == file['train']['epochs']
    # the model builds on a graph with the config's modalities, at the config's size
    data = _fake_graph(again['model_args'].get('modalities') or ['image', 'text'])
    model = build_model(again, data)
    assert model.hidden_channels == again['model_args']['hidden_channels']
    assert model.num_nodes == 12 and model.num_relations == 2
    if train.comat is not None:
        from torch_mmkg.training import CoMAT
        CoMAT(model, **train.comat)  # every CoMAT key is known
    if train.mmkrl_adversary is not None:
        from torch_mmkg.training import MMKRLAdversary
        MMKRLAdversary(model, **train.mmkrl_adversary)  # every key is known


def test_named_replacements():
    native, rotate = paper_configs.resolve('native_db15k'), paper_configs.resolve('rotate_db15k')
    assert 'comat' in native['train'] and 'comat' not in rotate['train']
    softmax = paper_configs.resolve('momok_mkgw_softmax')
    assert softmax['model'] == 'momok' and softmax['model_args']['objective'] == 'softmax'
    assert paper_configs.resolve('momok_mkgw')['model_args']['objective'] == 'bce'
    assert softmax['model_args']['num_experts'] == 3  # the rest of the file's model_args
    tucker = paper_configs.resolve('tucker_mkgw_softmax')
    assert 'num_experts' not in tucker['model_args']  # model_args replaced, not updated
    assert TrainConfig.from_dict(tucker['train']).regime == '1-n'
    for name in ('vbkgc_wn9_exclude', 'transe_wn9_exclude'):
        assert paper_configs.resolve(name)['train']['exclude_query_entity'] is True
    for name in ('vbkgc_wn9', 'transe_wn9'):
        assert 'exclude_query_entity' not in paper_configs.resolve(name)['train']


def test_backbones_keep_the_methods_settings():
    assert set(BACKBONES) == {n for n, r in RUNS.items() if r.model is not None}
    for backbone, method in BACKBONES.items():
        run, file = RUNS[backbone], _file(backbone)
        assert RUNS[method].config == run.config and RUNS[method].model is None
        cfg, ref = paper_configs.resolve(backbone), paper_configs.resolve(method)
        assert cfg['dataset'] == ref['dataset']
        replaced = set(run.train_update or {}) | set(RUNS[method].train_update or {})
        for key in (set(cfg['train']) | set(ref['train'])) - replaced:
            assert cfg['train'].get(key) == ref['train'].get(key), (backbone, key)
        for key in ('epochs', 'lr', 'batch_size', 'seed'):
            assert cfg['train'][key] == file['train'][key], (backbone, key)
        # the size and the hyper-parameters both models have are the method's
        shared = set(cfg['model_args']) & set(file['model_args'])
        assert 'hidden_channels' in shared
        for key in shared:
            assert cfg['model_args'][key] == file['model_args'][key], (backbone, key)
    loss = paper_configs.resolve('transe_wn9')['model_args']['loss']  # VBKGC's hinge
    vbkgc = _file('transe_wn9')['model_args']
    assert loss.margin == vbkgc['margin'] and loss.aggregate == vbkgc['loss_aggregate']
    # MMKRL's margin and distance (L1 of L2-normalised arguments) for its TransE
    transe = paper_configs.resolve('transe_mkgw_mmkrl')['model_args']
    assert transe['loss'].margin == _file('mmkrl_mkgw')['model_args']['margin']
    assert transe['normalize'] is True and transe.get('p_norm', 1.0) == 1.0
    assert 'mmkrl_adversary' in paper_configs.resolve('mmkrl_adv_mkgw')['train']
    assert 'mmkrl_adversary' not in paper_configs.resolve('mmkrl_mkgw')['train']


# The table ###################################################################################

SETTINGS = {'minutes': 5.0, 'jobs': 10, 'threads': 1, 'device': 'NVIDIA H100', 'torch': '2.x',
            'seeds': [0, 1]}


def _cells(text, label):
    line = next(line for line in text.splitlines() if line.startswith(f'| {label} |'))
    return [c.strip() for c in line.strip().strip('|').split('|')]


def _entry(mrr, epochs, seconds=1.0):
    return {'mrr': mrr, 'hits@1': mrr / 2, 'hits@3': mrr + 1, 'hits@10': mrr + 2,
            'optimistic_mrr': mrr + 0.5, 'epochs': epochs, 'seconds_per_epoch': seconds}


def test_table(monkeypatch):
    monkeypatch.setitem(RUNS, 'no_paper', paper_configs.Run('rotate_mkgw.yaml',
                                                            label='RotatE without a paper'))
    long_error = 'exit 1: ' + 'E' * 200
    results = {'settings': SETTINGS, 'runs': {
        'native_db15k/seed0': _entry(37.0, 12, 3.0), 'native_db15k/seed1': _entry(39.0, 14, 5.0),
        'rotate_db15k/seed0': {'error': 'exit 1: ValueError: a | b'},
        'lbmkgc_db15k/seed0': {'error': long_error},
        'vbkgc_wn9/seed0': {'diverged': 'the loss is nan after epoch 3', 'minutes': 0.2},
        'transe_wn9/seed0': {'minutes': 1.0},
        'transe_wn9_exclude/seed0': _entry(80.0, 7), 'transe_wn9_exclude/seed1': {'error': 'x'},
        'no_paper/seed0': {'mrr': 20.0, 'hits@1': 10.0, 'hits@3': 21.0, 'hits@10': 33.333,
                           'optimistic_mrr': 20.5, 'epochs': 7, 'seconds_per_epoch': 0.5},
    }}
    text = paper_configs.table(results)
    assert text.startswith('Budget: 5.0 min of training per run; 10 runs at a time on one '
                           'NVIDIA H100 (1 CPU threads each), torch 2.x, seeds 0, 1. Mean ± std '
                           'over the seeds.')
    assert '\n|' + '---|' * 11 + '\n' in text
    # the mean and the sample standard deviation of the two seeds (stdev of 37, 39 is sqrt 2)
    assert _cells(text, RUNS['native_db15k'].label) == [
        RUNS['native_db15k'].label, 'DB15K', '38.00 ± 1.41', '19.00 ± 0.71', '39.00 ± 1.41',
        '40.00 ± 1.41', '38.50 ± 1.41', '37.16', '13 (1000)', '4.00', '2']
    assert _cells(text, 'RotatE without a paper') == [
        'RotatE without a paper', 'MKG-W', '20.00 ± 0.00', '10.00 ± 0.00', '21.00 ± 0.00',
        '33.33 ± 0.00', '20.50 ± 0.00', '—', '7 (1000)', '0.50', '1']
    # a failed run shows its error (escaped for markdown), cut at 120 characters
    row = next(line for line in text.splitlines()
               if line.startswith(f"| {RUNS['rotate_db15k'].label} |"))
    assert 'exit 1: ValueError: a \\| b |' in row and row.endswith('| 1 failed |')
    assert _cells(text, RUNS['lbmkgc_db15k'].label)[2] == long_error[:120]
    assert _cells(text, RUNS['vbkgc_wn9'].label)[1:3] == ['WN9-IMG',
                                                          'the loss is nan after epoch 3']
    assert _cells(text, RUNS['transe_wn9'].label)[2] == 'no result'
    assert _cells(text, RUNS['transe_wn9_exclude'].label)[-1] == '1 (+1 failed)'
    # one row per run with a result, in the order of RUNS
    rows = [line for line in text.splitlines() if line.startswith('| ')][1:]
    order = [n for n in RUNS if any(k.split('/')[0] == n for k in results['runs'])]
    assert len(rows) == len(order)
    for row, name in zip(rows, order):
        assert row.startswith(f'| {RUNS[name].label} |')
    assert RUNS['momok_mkgw'].label not in text


def test_merge(tmp_path, capsys):
    a = {'settings': dict(SETTINGS, seeds=[0]), 'runs': {'native_db15k/seed0': _entry(30, 5)}}
    b = {'settings': dict(SETTINGS, seeds=[1, 2], jobs=12), 'runs': {
        'native_db15k/seed1': _entry(32, 5), 'native_db15k/seed2': _entry(34, 5)}}
    paths = []
    for i, part in enumerate((a, b)):
        paths.append(str(tmp_path / f'{i}.json'))
        json.dump(part, open(paths[-1], 'w'))
    merged = paper_configs.merge(paths)
    assert merged['settings'] == [a['settings'], b['settings']]
    assert set(merged['runs']) == {f'native_db15k/seed{s}' for s in range(3)}
    out = tmp_path / 'out'
    assert paper_configs.main(['--merge', *paths, '--out', str(out)]) == 0
    text = open(out / 'table.md').read()
    assert text == capsys.readouterr().out.rstrip('\n') + '\n'
    assert 'seeds 0; 12 runs at a time' in text and 'seeds 1, 2.' in text
    assert _cells(text, RUNS['native_db15k'].label)[2:3] == ['32.00 ± 2.00']
    json.dump(a, open(paths[1], 'w'))  # the same run twice
    with pytest.raises(ValueError, match='native_db15k/seed0'):
        paper_configs.merge(paths)


# Training and orchestration on fake graphs ##################################################

@pytest.fixture
def fake_graphs(tmp_path, monkeypatch):
    r"""Small fake graphs saved under the dataset names of the runs, and every run resolved
    at a small size for two epochs."""
    folder = tmp_path / 'graphs'
    for name, modalities in (('MKG-W', ['image', 'text']), ('DB15K', ['image', 'text']),
                             ('WN9-IMG', ['gloss'])):
        graphs.save_graph(_fake_graph(modalities, num_entities=40, num_triples=300),
                          str(folder / f'{name}.pt'))

    def small(name):
        cfg = REAL_RESOLVE(name)
        cfg['model_args'] = dict(cfg['model_args'], hidden_channels=8)
        cfg['train'] = dict(cfg['train'], epochs=2, batch_size=64, num_negatives=4)
        return cfg

    monkeypatch.setattr(paper_configs, 'resolve', small)
    return str(folder)


def test_one_run_in_process(fake_graphs, tmp_path):
    out = tmp_path / 'out'
    args = ['--one', 'native_db15k', '--graphs', fake_graphs, '--minutes', '2', '--eval_every',
            '1', '--device', 'cpu', '--out', str(out), '--threads', '1']
    assert paper_configs.main(args) == 0
    assert torch.get_num_threads() == 1
    summary = json.load(open(out / 'native_db15k' / 'seed0' / 'summary.json'))
    assert summary['settings'] == {'run': 'native_db15k/seed0', 'minutes': 2.0}
    entry = summary['native_db15k/seed0']
    assert entry['epochs'] == 2 and 0 < entry['mrr'] <= 100
    assert entry['mrr'] <= entry['optimistic_mrr'] and entry['seconds_per_epoch'] > 0
    # the budget and the run's own settings reach the trainer
    res = json.load(open(out / 'native_db15k' / 'seed0' / 'native_db15k' / 'seed0' /
                         'results.json'))
    c = res['config']
    assert (c['max_minutes'], c['eval_every'], c['checkpoint_every'], c['device'],
            c['progress'], c['test']) == (2.0, 1, 0, 'cpu', False, True)
    assert (c['sampling'], c['corrupt_side_per'], c['lr']) == ('bernoulli', 'negative', 1e-4)
    assert c['comat']['adversarial_weight'] == 1e-4
    assert [h['epoch'] for h in res['history'] if 'val' in h] == [1, 2]
    assert res['model'] == 'NATIVE'
    # seeded: the same run again gives the same result
    again = paper_configs.train_one('native_db15k', fake_graphs, 2.0, 1, 'cpu',
                                    str(tmp_path / 'again'))
    assert (again['mrr'], again['best_val_mrr']) == (entry['mrr'], entry['best_val_mrr'])
    # another seed is another run
    other = paper_configs.train_one('native_db15k', fake_graphs, 2.0, 1, 'cpu',
                                    str(tmp_path / 'other'), seed=1)
    assert other['best_val_mrr'] != entry['best_val_mrr']
    assert json.load(open(tmp_path / 'other' / 'native_db15k' / 'seed1' / 'native_db15k' /
                          'seed1' / 'results.json'))['config']['seed'] == 1


def test_main_runs_jobs_at_a_time(fake_graphs, tmp_path, monkeypatch, capsys):
    r""":func:`main` with its processes replaced by in-process calls of the script's own
    ``--one`` command line: every run trains for real on the fake graphs."""
    broken = paper_configs.resolve

    def resolve(name):  # one run fails in its process
        cfg = broken(name)
        if name == 'lbmkgc_db15k':
            cfg['model_args']['no_such_argument'] = 1
        return cfg

    monkeypatch.setattr(paper_configs, 'resolve', resolve)
    calls, running, peak = [], set(), [0]

    class Process:
        def __init__(self, cmd, stdout, stderr, env):
            self.name = cmd[cmd.index('--one') + 1]
            calls.append((cmd, env))
            running.add(self.name)
            peak[0] = max(peak[0], len(running))
            if self.name == 'transe_wn9_exclude':  # killed without a word
                self.code = -9
            else:
                try:
                    with contextlib.redirect_stdout(stdout):
                        self.code = paper_configs.main(cmd[2:])
                except Exception:
                    traceback.print_exc(file=stdout)
                    self.code = 1
            stdout.flush()
            self.polls, self.returncode = 0, None

        def poll(self):  # still running at the first look
            self.polls += 1
            if self.polls == 1:
                return None
            running.discard(self.name)
            self.returncode = self.code
            return self.code

    monkeypatch.setattr(paper_configs, 'subprocess', types.SimpleNamespace(
        Popen=Process, STDOUT=paper_configs.subprocess.STDOUT))
    monkeypatch.setattr(paper_configs, 'time', types.SimpleNamespace(
        sleep=lambda seconds: None, perf_counter=time.perf_counter))
    monkeypatch.setattr(paper_configs.os, 'cpu_count', lambda: 6)  # 2 threads for 3 jobs
    out = tmp_path / 'out'
    assert paper_configs.main(['--graphs', fake_graphs, '--minutes', '2', '--eval_every', '1',
                               '--jobs', '3', '--device', 'cpu', '--out', str(out)]) == 0

    assert [cmd[cmd.index('--one') + 1] for cmd, _ in calls] == list(RUNS)  # all, in order
    assert peak[0] == 3 and not running
    for cmd, env in calls:
        assert cmd[:2] == [sys.executable, osp.realpath(paper_configs.__file__)]
        assert dict(zip(cmd[4::2], cmd[5::2])) == {
            '--seeds': '0', '--graphs': fake_graphs, '--minutes': '2.0', '--eval_every': '1',
            '--device': 'cpu', '--out': str(out), '--threads': '2'}
        assert env['OMP_NUM_THREADS'] == '2' and env['PYTHONUNBUFFERED'] == '1'

    results = json.load(open(out / 'results.json'))
    s = results['settings']
    assert (s['minutes'], s['jobs'], s['threads'], s['torch'], s['seeds']) == (
        2.0, 3, 2, torch.__version__, [0])
    assert s['device'].startswith('CPU') and '6 cores' in s['device']
    assert set(results['runs']) == {f'{name}/seed0' for name in RUNS}
    failed = {'lbmkgc_db15k', 'transe_wn9_exclude'}
    for name in set(RUNS) - failed:
        entry = results['runs'][f'{name}/seed0']
        assert entry == json.load(open(out / name / 'seed0' / 'summary.json'))[f'{name}/seed0']
        assert entry['epochs'] == 2 and 0 < entry['mrr'] <= 100, name
    error = results['runs']['lbmkgc_db15k/seed0']['error']
    assert error.startswith('exit 1: ValueError: bad model_args for lbmkgc')
    assert 'no_such_argument' in error
    assert 'Traceback' in open(out / 'lbmkgc_db15k_seed0.log').read()
    assert results['runs']['transe_wn9_exclude/seed0'] == {'error': 'exit -9: '}
    assert 'MRR' in open(out / 'native_db15k_seed0.log').read()  # the run's own line, in its log

    table = open(out / 'table.md').read()
    assert table == paper_configs.table(results)
    assert capsys.readouterr().out.endswith(table + '\n')
    for name in set(RUNS) - failed:
        mrr = f"{results['runs'][name + '/seed0']['mrr']:.2f} ± 0.00"
        assert _cells(table, RUNS[name].label)[2] == mrr
    assert _cells(table, RUNS['lbmkgc_db15k'].label)[2] == error[:120]
    assert not any(osp.exists(out / n / 'seed0' / 'summary.json') for n in failed)
    assert sorted(os.listdir(out)) == sorted(
        ['results.json', 'table.md'] + [f'{n}_seed0.log' for n in RUNS]
        + [n for n in RUNS if n not in failed])
