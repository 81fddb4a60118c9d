r"""Self-describing runs: the run directory, load_run, evaluate and predict of saved runs, the
callbacks and trackers, interruption by SIGTERM and bit-identical resume."""
import csv
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from torch_mmkg import cli
from torch_mmkg.data import ENTITY, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.experiment import load_config_file, load_run, predict_target, train
from torch_mmkg.training import Callback, Trainer, TrainConfig, TrainingInterrupted


def make_folder(root, num_entities=40, num_relations=3, num_triples=360, seed=0):
    r"""A labelled MMKGFolder (named entities, a text feature with holes) written from a fake
    graph, so that every process can load it by path."""
    data = FakeMMKGDataset(num_entities=num_entities, num_relations=num_relations,
                           num_triples=num_triples, modalities={'text': 4}, seed=seed)[0]
    raw = osp.join(str(root), 'raw')
    os.makedirs(osp.join(raw, 'features'), exist_ok=True)
    ent = [f'entity {i}' for i in range(num_entities)]
    rel = [f'relation_{j}' for j in range(num_relations)]
    for split, name in (('train', 'train.txt'), ('val', 'valid.txt'), ('test', 'test.txt')):
        h, r, t = get_triples(data, split)
        with open(osp.join(raw, name), 'w') as f:
            for a, b, c in zip(h.tolist(), r.tolist(), t.tolist()):
                f.write(f'{ent[a]}\t{rel[b]}\t{ent[c]}\n')
    with open(osp.join(raw, 'entities.txt'), 'w') as f:
        f.write('\n'.join(ent) + '\n')
    with open(osp.join(raw, 'relations.txt'), 'w') as f:
        f.write('\n'.join(rel) + '\n')
    x = data[ENTITY].x_text.clone()
    x[~data[ENTITY].mask_text] = 0
    torch.save(x, osp.join(raw, 'features', 'text.pt'))
    return str(root)


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / 'kg')


def _cfg(folder, model='distmult', epochs=3, **train):
    return {'dataset': folder, 'model': model, 'model_args': {'hidden_channels': 8},
            'train': {'epochs': epochs, 'batch_size': 64, 'num_negatives': 4,
                      'eval_every': 1, 'progress': False, **train}}


def _no_timing(d):
    # the metrics, without the seconds and memory that the evaluation took
    if isinstance(d, dict):
        return {k: _no_timing(v) for k, v in d.items() if 'seconds' not in k and 'peak' not in k}
    return d


def _history(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_run_directory_is_self_describing(folder, tmp_path):
    out = str(tmp_path / 'run')
    results = train(_cfg(folder), out=out)
    for name in ('config.yaml', 'model.json', 'data.json', 'history.jsonl', 'metrics.csv',
                 'log.txt', 'checkpoint.pt', 'best_model.pt', 'results.json'):
        assert osp.isfile(osp.join(out, name)), name
    saved = load_config_file(osp.join(out, 'config.yaml'))
    # every training option, defaults included, resolved by the trainer
    assert set(saved['train']) == set(TrainConfig().to_dict())
    assert saved['train']['checkpoint_every'] == 1 and saved['train']['lr'] == 1e-3
    assert saved['model'] == 'distmult' and osp.isabs(saved['dataset'])
    model = json.load(open(osp.join(out, 'model.json')))
    assert model['name'] == 'distmult' and model['arguments']['hidden_channels'] == 8
    assert 'regularization_weight' in model['arguments']  # a default, recorded
    data = json.load(open(osp.join(out, 'data.json')))
    assert data['fingerprint']['num_entities'] == 40
    assert set(data['fingerprint']['modalities']) == {'text'}
    history = _history(osp.join(out, 'history.jsonl'))
    assert [h['epoch'] for h in history] == [1, 2, 3]
    assert history == json.loads(json.dumps(results['history']))
    rows = list(csv.DictReader(open(osp.join(out, 'metrics.csv'))))
    assert [float(r['val_mrr']) for r in rows] == [h['val']['mrr'] for h in history]
    assert 'val mrr' in open(osp.join(out, 'log.txt')).read()


def test_load_run_reproduces_the_test_metrics_exactly(folder, tmp_path, capsys):
    out = str(tmp_path / 'run')
    results = train(_cfg(folder, model='rotate', epochs=4), out=out)
    run = load_run(out)
    assert run.config['model'] == 'rotate' and not run.model.training
    again = run.evaluate('test')
    # bit for bit, breakdowns too
    assert _no_timing(again) == _no_timing(json.loads(json.dumps(results['test'])))
    val = run.evaluate('val_clean')
    assert val['realistic']['both']['mrr'] == pytest.approx(results['best_val']['mrr'],
                                                            abs=0)
    # the command line prints the same, and the breakdowns
    assert cli.main(['evaluate', out, '--json']) == 0
    assert _no_timing(json.loads(capsys.readouterr().out)) == _no_timing(again)
    assert cli.main(['evaluate', out]) == 0
    text = capsys.readouterr().out
    both = again['realistic']['both']
    assert f"realistic   both  {both['mrr']:.4f}" in text
    cat = {k: v['both'] for k, v in again['by_category'].items()}
    assert 'by category: ' + ', '.join(f"{k} {m['mrr']:.4f} ({m['count']})"
                                       for k, m in cat.items()) in text


def test_load_run_refuses_other_data(folder, tmp_path):
    out = str(tmp_path / 'run')
    train(_cfg(folder, epochs=1), out=out)
    feat = osp.join(folder, 'raw', 'features', 'text.pt')
    x = torch.load(feat)
    x[0, 0] += 1.0
    torch.save(x, feat)
    with pytest.raises(ValueError, match="not the one it was trained on .*modality 'text'"):
        load_run(out)
    assert load_run(out, check_data=False).model is not None
    with pytest.raises(FileNotFoundError, match='no config.yaml'):
        load_run(str(tmp_path))


def test_predict_equals_brute_force(folder, tmp_path):
    out = str(tmp_path / 'run')
    train(_cfg(folder, epochs=2), out=out)
    run = load_run(out)
    data, model = run.data, run.model
    pred = run.predict(head='entity 3', relation='relation_1', k=5)
    scores = model.score_tails(torch.tensor([3]), torch.tensor([1]))[0]
    order = sorted(range(40), key=lambda e: -float(scores[e]))[:5]
    assert pred.ids == order and pred.names == [f'entity {e}' for e in order]
    assert pred.scores == pytest.approx([float(scores[e]) for e in order], abs=0)
    # known triples are marked with their split, or left out when filtered
    h, r, t = get_triples(data, 'all')
    known = {(a, b, c) for a, b, c in zip(h.tolist(), r.tolist(), t.tolist())}
    full = run.predict(head=3, relation=1, k=0)
    assert len(full) == 40
    assert [k is not None for k in full.known] == [(3, 1, e) in known for e in full.ids]
    filtered = run.predict(head='entity 3', relation='relation_1', k=0, filtered=True)
    assert filtered.ids == [e for e in full.ids if (3, 1, e) not in known]
    heads = predict_target(model, data, relation='relation_0', tail='entity 5', k=3)
    s = model.score_heads(torch.tensor([0]), torch.tensor([5]))[0]
    assert heads.ids == sorted(range(40), key=lambda e: -float(s[e]))[:3]
    assert heads.query == {'head': None, 'relation': 0, 'tail': 5, 'target': 'head'}
    with pytest.raises(ValueError, match="no entity named 'entity 300'; did you mean"):
        run.predict(head='entity 300', relation=0)
    with pytest.raises(ValueError, match='exactly one of head and tail'):
        run.predict(head=1, tail=2, relation=0)
    with pytest.raises(ValueError, match=r'relation id 7 is out of range \[0, 3\)'):
        run.predict(head=1, relation=7)


def test_predict_command_prints_named_tails(folder, tmp_path, capsys):
    out = str(tmp_path / 'run')
    train(_cfg(folder, epochs=1), out=out)
    capsys.readouterr()
    assert cli.main(['predict', out, '--head', 'entity 3', '--relation', 'relation_1']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ['rank', 'id', 'name', 'score', 'known']
    assert len(lines) == 11 and ' entity ' in lines[1]
    assert cli.main(['predict', out, '--relation', 'relation_1']) == 2
    assert 'exactly one of --head' in capsys.readouterr().err


class Recorder(Callback):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_fit_start(self, trainer):
        self.calls.append(('start', trainer.state['epoch']))

    def on_epoch_end(self, trainer, record):
        self.calls.append(('epoch', record['epoch']))
        if record['epoch'] == self.stop_at:
            trainer.request_stop()  # as the SIGTERM handler does

    def on_validation_end(self, trainer, epoch, metrics):
        self.calls.append(('val', epoch, round(metrics['mrr'], 12)))

    def on_checkpoint(self, trainer, path):
        self.calls.append(('checkpoint', trainer.state['epoch']))

    def on_fit_end(self, trainer, results):
        self.calls.append(('end', results['epochs_trained']))


def test_callbacks_order_and_interruption_resumes_bit_identically(folder, tmp_path):
    cfg = _cfg(folder, model='rotate', epochs=5, eval_every=2)
    ref = Recorder()
    full = train(cfg, out=str(tmp_path / 'full'), callbacks=[ref])
    assert [c[0] for c in ref.calls] == ['start', 'epoch', 'checkpoint', 'val', 'epoch',
                                         'checkpoint', 'epoch', 'checkpoint', 'val', 'epoch',
                                         'checkpoint', 'val', 'epoch', 'checkpoint', 'end']
    out = str(tmp_path / 'cut')
    with pytest.raises(TrainingInterrupted) as e:
        train(cfg, out=out, callbacks=[Recorder(stop_at=3)])
    assert e.value.epoch == 3 and e.value.checkpoint == osp.join(out, 'checkpoint.pt')
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2, 3]
    resumed = train(None, out=out, resume=True)
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2, 3, 4, 5]
    assert _no_timing(resumed['test']) == _no_timing(full['test'])
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    a = torch.load(osp.join(out, 'best_model.pt'))
    b = torch.load(osp.join(tmp_path / 'full', 'best_model.pt'))
    assert all(torch.equal(a[k], b[k]) for k in b if isinstance(b[k], torch.Tensor))


def test_history_is_rewritten_on_resume(folder, tmp_path):
    # an epoch trained after the last checkpoint is lost with the interruption: the resumed
    # run's history holds each epoch once
    out = str(tmp_path / 'run')
    with pytest.raises(TrainingInterrupted):
        train(_cfg(folder, epochs=4, checkpoint_every=2), out=out,
              callbacks=[Recorder(stop_at=3)])
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2, 3]
    train(None, out=out, resume=True)
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2, 3, 4]
    rows = list(csv.DictReader(open(osp.join(out, 'metrics.csv'))))
    assert [int(r['epoch']) for r in rows] == [1, 2, 3, 4]


def test_an_exception_in_a_callback_stops_training(folder, tmp_path):
    class Prune(Callback):
        def on_validation_end(self, trainer, epoch, metrics):
            if epoch == 2:
                raise KeyError('pruned')

    with pytest.raises(KeyError, match='pruned'):
        train(_cfg(folder, epochs=5), callbacks=[Prune()])
    with pytest.raises(TypeError, match=r'callbacks\[0\] must be a torch_mmkg'):
        Trainer(None, None, callbacks=[object()])


@pytest.mark.skipif(not hasattr(signal, 'SIGTERM') or sys.platform == 'win32',
                    reason='POSIX signals')
def test_sigterm_leaves_a_resumable_run_and_resume_is_bit_identical(folder, tmp_path):
    args = ['--dataset', folder, '--model', 'distmult', '--dim', '8', '--batch-size', '16',
            '--num-negatives', '4', '--eval-every', '1', '--progress', 'false']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cut = str(tmp_path / 'cut')
    proc = subprocess.Popen([sys.executable, '-m', 'torch_mmkg', 'train', *args,
                             '--epochs', '400', '--out', cut], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = osp.join(cut, 'history.jsonl')
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if osp.exists(history) and len(_history(history)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert 'interrupted: training interrupted during epoch' in err
    assert f'torch-mmkg train --resume {cut}' in err
    done = len(_history(history))
    assert done >= 2 and osp.isfile(osp.join(cut, 'checkpoint.pt'))
    total = done + 2
    # resume with the run directory alone; compare with a run never interrupted
    assert cli.main(['train', '--resume', cut, '--epochs', str(total)]) == 0
    full = str(tmp_path / 'full')
    assert cli.main(['train', *args, '--epochs', str(total), '--out', full]) == 0
    a, b = (json.load(open(osp.join(d, 'results.json'))) for d in (cut, full))
    assert _no_timing(a['test']) == _no_timing(b['test']) and a['epochs_trained'] == total
    assert [h['loss'] for h in a['history']] == [h['loss'] for h in b['history']]
    assert [h['epoch'] for h in _history(history)] == list(range(1, total + 1))
