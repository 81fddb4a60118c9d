r"""The reproduction harness (``benchmark/reproduce.py``): the table's statistics and verdicts,
resumability, one process per output folder, and a real run of every row kind on a fake
graph."""
import fcntl
import json
import os
import os.path as osp
import statistics
import sys

import pytest
import torch

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'benchmark')
sys.path.insert(0, ROOT)
reproduce = pytest.importorskip('reproduce')

SETTINGS = {'minutes': 1.0, 'epochs': 3, 'seeds': [0, 1, 2], 'device': 'CPU', 'torch': 'x',
            'threads': 2}


def _entry(mrr, epochs=3):
    return {'mrr': mrr, 'hits@1': mrr / 2, 'hits@3': mrr, 'hits@10': mrr * 1.5,
            'optimistic_mrr': mrr + 1, 'optimistic_hits@1': 0, 'optimistic_hits@3': 0,
            'optimistic_hits@10': 0, 'epochs': epochs}


def _row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f'| {label} |'))


def test_table_means_stds_and_verdicts():
    s = {'DB15K/frequency_relation': _entry(14.0, 0), 'DB15K/frequency_global': _entry(7.0, 0)}
    for seed, (r, n, m) in enumerate([(30.0, 35.0, 31.0), (31.0, 36.0, 20.0),
                                      (32.0, 37.0, 40.0)]):
        s[f'DB15K/rotate/seed{seed}'] = _entry(r)
        s[f'DB15K/native/seed{seed}'] = _entry(n)
        s[f'DB15K/lbmkgc/seed{seed}'] = _entry(m)
    text = reproduce.table(s, SETTINGS)
    native = _row(text, 'NATIVE w/o CoMAT')
    sd = statistics.stdev([35.0, 36.0, 37.0])
    assert f'36.00 ± {sd:.2f}' in native  # MRR mean ± sample std
    assert '| 37.00 ± ' in native  # optimistic MRR beside it
    assert 'yes (+5.00 vs RotatE, spread 1.00)' in native
    lbmkgc = _row(text, 'LBMKGC')  # mean 30.33, std 10.02: within its spread of RotatE
    assert '| no (' in lbmkgc
    assert '37.23' in lbmkgc  # the paper's number
    assert '| 3 |' in lbmkgc  # seeds
    s3 = dict(s, **{'DB15K/lbmkgc/seed3': {'diverged': 'nan at epoch 3'}})
    assert '| 3 (+1 diverged) |' in _row(reproduce.table(s3, SETTINGS), 'LBMKGC')
    freq = _row(text, 'per-relation answer frequency')
    assert '| 14.00 |' in freq  # one run: no spread
    # a method with one seed gets the difference to its backbone but no verdict
    s1 = {k: v for k, v in s.items() if not (k.startswith('DB15K/native/') and
                                             not k.endswith('seed0'))}
    one = _row(reproduce.table(s1, SETTINGS), 'NATIVE w/o CoMAT')
    assert '| 35.00 |' in one and '+4.00 vs RotatE (one seed: no verdict)' in one
    assert 'realistic ranks' in text and 'val_clean' in text and 'is a candidate' in text
    # below a frequency row is a "no" even when above the backbone
    s2 = dict(s, **{'DB15K/frequency_relation': _entry(36.5, 0)})
    assert '| no (' in _row(reproduce.table(s2, SETTINGS), 'NATIVE w/o CoMAT')


def test_second_process_is_refused(tmp_path):
    with open(tmp_path / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert reproduce.main(['--out', str(tmp_path), '--table_only']) == 2


def test_runs_every_row_kind_and_resumes(tmp_path, monkeypatch):
    from torch_mmkg.datasets import FakeMMKGDataset
    data = FakeMMKGDataset(num_entities=40, num_relations=3, num_clusters=4, num_triples=300,
                           modalities={'image': 6, 'text': 5}, seed=1)[0]
    monkeypatch.setattr(reproduce, 'DATASETS', {'Fake': lambda root: [data]})
    real = reproduce.methods('DB15K')
    keep = ('rotate', 'native', 'tucker', 'momok')
    small = {k: real[k]._replace(model_args=dict(real[k].model_args, hidden_channels=8),
                                 train=dict(real[k].train, batch_size=64, num_negatives=4))
             for k in keep}
    monkeypatch.setattr(reproduce, 'methods', lambda dataset: small)
    args = ['--datasets', 'Fake', '--seeds', '0', '1', '--epochs', '2', '--eval_every', '1',
            '--minutes', '0', '--out', str(tmp_path), '--no-isolate']  # equal epochs
    assert reproduce.main(args) == 0
    summary = json.load(open(tmp_path / 'summary.json'))
    for k in keep:
        for seed in (0, 1):
            assert summary[f'Fake/{k}/seed{seed}']['epochs'] == 2
    assert 0 < summary['Fake/frequency_relation']['mrr'] <= 100
    # two seeds of one method differ (the seed reaches the model and the sampling)
    assert summary['Fake/rotate/seed0']['mrr'] != summary['Fake/rotate/seed1']['mrr']
    table = open(tmp_path / 'table.md').read()
    assert '**Fake**' in table and '| NATIVE w/o CoMAT |' in table
    assert table.startswith('Budget: 2 epochs per run,')
    # resumable: a second call trains nothing, a missing run is redone
    mtime = os.path.getmtime(tmp_path / 'summary.json')
    del summary['Fake/momok/seed1']
    json.dump(summary, open(tmp_path / 'summary.json', 'w'))
    calls = []
    orig = reproduce.Summary.run
    monkeypatch.setattr(reproduce.Summary, 'run',
                        lambda self, name, *a: calls.append(name) or orig(self, name, *a))
    assert reproduce.main(args) == 0
    assert calls == ['Fake/momok/seed1']
    assert os.path.getmtime(tmp_path / 'summary.json') >= mtime


def test_match_epochs_of_seed(tmp_path, monkeypatch):
    # seeds run on a busy machine train for the epochs seed 0 reached, not for the minutes;
    # the table counts them and leaves their times out of the cost column
    from torch_mmkg.datasets import FakeMMKGDataset
    data = FakeMMKGDataset(num_entities=30, num_relations=3, num_clusters=3, num_triples=200,
                           seed=2)[0]
    monkeypatch.setattr(reproduce, 'DATASETS', {'Fake': lambda root: [data]})
    real = reproduce.methods('DB15K')['rotate']
    small = {'rotate': real._replace(model_args=dict(real.model_args, hidden_channels=8),
                                     train=dict(real.train, batch_size=64, num_negatives=4))}
    monkeypatch.setattr(reproduce, 'methods', lambda dataset: small)
    common = ['--datasets', 'Fake', '--eval_every', '1', '--out', str(tmp_path),
              '--no-isolate']
    assert reproduce.main(common + ['--seeds', '0', '--epochs', '2', '--minutes', '0']) == 0
    summary = json.load(open(tmp_path / 'summary.json'))
    summary['Fake/rotate/seed0']['seconds_per_epoch'] = 7.0  # the quiet run's time
    json.dump(summary, open(tmp_path / 'summary.json', 'w'))
    assert reproduce.main(common + ['--seeds', '1', '2', '--epochs', '9', '--minutes', '5',
                                    '--match_epochs_of_seed', '0']) == 0
    summary = json.load(open(tmp_path / 'summary.json'))
    for seed in (1, 2):
        entry = summary[f'Fake/rotate/seed{seed}']
        assert entry['epochs'] == 2 and entry['epochs_matched_to_seed'] == 0
    assert 'epochs_matched_to_seed' not in summary['Fake/rotate/seed0']
    text = open(tmp_path / 'table.md').read()
    assert '2 runs (counted after the * in the seeds column)' in text
    row = _row(text, 'RotatE')
    assert '| 3 (2*) |' in row and '| 7.00 |' in row  # only seed 0's time
    # a seed without a run to match is skipped, not trained for the budget
    assert reproduce.main(common + ['--seeds', '3', '--match_epochs_of_seed', '5']) == 0
    assert 'Fake/rotate/seed3' not in json.load(open(tmp_path / 'summary.json'))


def test_isolated_run_records_its_own_cost(tmp_path, monkeypatch):
    # --isolate (the default) trains each run in a fresh process that reads the graph from a
    # file: its entry carries the memory before and at the peak of training, and the table
    # prints seconds per epoch and the peak
    from torch_mmkg.datasets import FakeMMKGDataset
    data = FakeMMKGDataset(num_entities=40, num_relations=3, num_clusters=4, num_triples=300,
                           modalities={'image': 6, 'text': 5}, seed=1)[0]
    monkeypatch.setattr(reproduce, 'DATASETS', {'Fake': lambda root: [data]})
    rotate = reproduce.methods('DB15K')['rotate']
    small = {'rotate': rotate._replace(model_args=dict(rotate.model_args, hidden_channels=8),
                                       train=dict(rotate.train, batch_size=64,
                                                  num_negatives=4))}
    monkeypatch.setattr(reproduce, 'methods', lambda dataset: small)
    args = ['--datasets', 'Fake', '--seeds', '0', '--epochs', '2', '--eval_every', '1',
            '--minutes', '0', '--out', str(tmp_path)]
    assert reproduce.main(args) == 0
    entry = json.load(open(tmp_path / 'summary.json'))['Fake/rotate/seed0']
    assert entry['epochs'] == 2
    assert 0 < entry['rss_before_training_bytes'] <= entry['peak_memory']['cpu_max_rss_bytes']
    assert entry['seconds_per_epoch'] > 0
    # the same run in this process gives the same figures (the seed travels with it)
    monkeypatch.chdir(tmp_path)
    out2 = tmp_path / 'inproc'
    assert reproduce.main(args[:-1] + [str(out2), '--no-isolate']) == 0
    entry2 = json.load(open(out2 / 'summary.json'))['Fake/rotate/seed0']
    assert entry2['mrr'] == pytest.approx(entry['mrr'], abs=1e-9)
    row = _row(open(tmp_path / 'table.md').read(), 'RotatE')
    gib = 1024 ** 3
    assert f"| {entry['seconds_per_epoch']:.2f} | " in row
    added = (entry['peak_memory']['cpu_max_rss_bytes'] - entry['rss_before_training_bytes'])
    peak = entry['peak_memory']['cpu_max_rss_bytes'] / gib
    assert f"| {peak:.2f} (+{added / 1024 ** 2:.0f} MiB) |" in row


@pytest.mark.parametrize('dataset', ['DB15K', 'MKG-W'])
def test_every_row_builds_and_trains(dataset):
    # every row of the table builds on a graph with the dataset's modalities and trains one
    # epoch at its settings (dimensions and batch shrunk), so a misconfigured row fails here
    # rather than after hours of harness runs
    from torch_mmkg.datasets import FakeMMKGDataset
    from torch_mmkg.training import TrainConfig, Trainer
    modalities = {'text': 5, 'numeric': 6} if dataset == 'DB15K' else {'text': 5}
    data = FakeMMKGDataset(num_entities=30, num_relations=3, num_clusters=3, num_triples=200,
                           modalities=modalities, seed=0)[0]
    for name, method in reproduce.methods(dataset).items():
        method = method._replace(model_args=dict(method.model_args, hidden_channels=8))
        torch.manual_seed(0)
        model = reproduce.build_model(method, data)
        train = dict(method.train, batch_size=64)
        if 'num_negatives' in train:
            train['num_negatives'] = 4
        cfg = TrainConfig.from_dict({'epochs': 1, 'eval_every': 1, 'progress': False,
                                     'device': 'cpu', **train})
        res = Trainer(model, data, cfg).fit()
        assert 0 <= res['test']['realistic']['both']['mrr'] <= 1, name
