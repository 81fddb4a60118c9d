r"""Data-parallel training under torchrun (gloo on CPU): the same validation curve as one
process with the same global batch, sharded evaluation, rank 0 alone writing."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from torch_mmkg.training import distributed as D

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', 'experiment'))
from test_run import _history, make_folder  # noqa: E402


def test_shard_bounds_partition_the_batch():
    for n in range(0, 23):
        for w in (1, 2, 3, 5):
            bounds = [D.shard_bounds(n, r, w) for r in range(w)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [e - s for s, e in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    batch = (torch.arange(5), torch.arange(5) * 2, torch.ones(5, 3), 'x', torch.zeros(2))
    out, local, size = D.shard_batch(batch, 1, 2)
    assert (local, size) == (2, 5)
    assert out[0].tolist() == [3, 4] and out[1].tolist() == [6, 8]
    assert out[2].shape == (2, 3) and out[3] == 'x' and out[4].shape == (2, )
    from torch_mmkg.loader.negative_sampler import Negatives
    from torch_mmkg.loader.triple_loader import TripleBatch
    neg = Negatives(torch.arange(10).view(5, 2), torch.tensor([1, 0, 1, 1, 0]).bool())
    tb = TripleBatch(torch.arange(5), torch.zeros(5).long(), torch.ones(5).long(), neg)
    out, local, size = D.shard_batch(tb, 0, 2)
    assert type(out) is TripleBatch and type(out.negatives) is Negatives and local == 3
    assert out.negatives.index.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert out.negatives.corrupt_head.tolist() == [True, False, True]


def test_single_process_helpers_are_identities():
    assert D.world_size() == 1 and D.rank() == 0 and D.is_main()
    assert D.all_reduce_sum(2.5, torch.device('cpu')) == 2.5
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3, ), 2.0)
    D.average_gradients([p])
    assert p.grad.tolist() == [2.0, 2.0, 2.0]


def _torchrun(args, nproc, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           f'--nproc_per_node={nproc}', '-m', 'torch_mmkg', 'train', *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


_MAIN_FIRST = r"""
import os, sys, time
import torch.distributed as dist
from torch_mmkg.training import distributed as D
dist.init_process_group('gloo')
flag = os.path.join(sys.argv[1], 'written')
fail = sys.argv[2] == 'fail'


def build():
    if D.rank() == 0:
        time.sleep(1.0)  # a slow rank 0: the others must still wait for it
        if fail:
            raise ValueError('no such folder')
        with open(flag, 'w') as f:
            f.write('whole')
        return 'built'
    with open(flag) as f:  # rank 0's file, complete
        return f.read()


try:
    print(f'rank {D.rank()}: {D.main_first(build, "loading the dataset")}', flush=True)
except Exception as e:
    print(f'rank {D.rank()} raised {type(e).__name__}: {e}', flush=True)
dist.destroy_process_group()
"""


@pytest.mark.parametrize('mode', ['ok', 'fail'])
def test_main_first_runs_rank_0_before_the_others(tmp_path, mode):
    assert D.main_first(lambda: 3) == 3  # no process group: just the call
    script = tmp_path / 'main_first.py'
    script.write_text(_MAIN_FIRST)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node=2', str(script), str(tmp_path), mode]
    res = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith('rank'))
    if mode == 'ok':
        assert lines == ['rank 0: built', 'rank 1: whole']
    else:
        assert lines == ['rank 0 raised ValueError: no such folder',
                         'rank 1 raised RuntimeError: rank 1: rank 0 failed in loading the '
                         'dataset (ValueError: no such folder); see its message']


_NO_DROPOUT = ['--model-arg', 'input_dropout=0', '--model-arg', 'hidden_dropout1=0',
               '--model-arg', 'hidden_dropout2=0']


@pytest.mark.parametrize('model,extra', [
    ('rotate', ['--model-arg', 'margin=6']),
    ('native', ['--batch-size', '45']),  # 45 = 23 + 22: unequal shards
    ('distmult', ['--regime', '1-n', '--batch-size', '45']),  # 1-N batches of queries
    # batch norms over the global batch (global_batch_norm); dropout off, since each rank
    # draws its shard's masks from its own stream
    ('tucker', ['--batch-size', '45', *_NO_DROPOUT]),
])
def test_two_processes_give_the_one_process_curve(tmp_path, model, extra):
    folder = make_folder(tmp_path / 'kg')
    args = ['--dataset', folder, '--model', model, '--dim', '8', '--batch-size', '64',
            '--num-negatives', '4', '--epochs', '4', '--eval-every', '1', '--lr', '0.01',
            '--progress', 'false', *extra]
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    res = _torchrun(args + ['--out', one], 1, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    res = _torchrun(args + ['--out', two], 2, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"best_epoch"') == 1  # rank 0 alone prints and writes
    a, b = _history(osp.join(one, 'history.jsonl')), _history(osp.join(two, 'history.jsonl'))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert abs(x['val']['mrr'] - y['val']['mrr']) <= 1e-4, (x, y)
        assert x['val']['count'] == y['val']['count']
        assert x['loss'] == pytest.approx(y['loss'], rel=1e-4)
    ra, rb = (json.load(open(osp.join(d, 'results.json'))) for d in (one, two))
    assert rb['world_size'] == 2 and ra['world_size'] == 1
    assert abs(ra['test']['realistic']['both']['mrr'] -
               rb['test']['realistic']['both']['mrr']) <= 1e-4
    assert ra['test']['realistic']['both']['count'] == rb['test']['realistic']['both']['count']


def test_momok_trains_under_two_processes(tmp_path):
    # 1-N with the auxiliary CLUB step (its own optimiser, whose gradients are averaged too).
    # Not the one-process curve: the dropout masks come from each rank's stream, and the
    # per-modality scorers' losses are means over the queries of the shard they judge (the
    # CLUB term over its distinct entities), not over the global batch's.
    folder = make_folder(tmp_path / 'kg')
    args = ['--dataset', folder, '--model', 'momok', '--dim', '8', '--batch-size', '45',
            '--epochs', '2', '--eval-every', '1', '--lr', '0.01', '--progress', 'false',
            '--out', str(tmp_path / 'two')]
    res = _torchrun(args, 2, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    history = _history(osp.join(tmp_path / 'two', 'history.jsonl'))
    assert [h['epoch'] for h in history] == [1, 2]
    assert json.load(open(tmp_path / 'two' / 'results.json'))['world_size'] == 2


def test_resume_with_another_world_size(tmp_path):
    # two epochs in one process, two more in two processes: the curve of four epochs in one
    folder = make_folder(tmp_path / 'kg')
    args = ['--dataset', folder, '--model', 'rotate', '--dim', '8', '--batch-size', '64',
            '--num-negatives', '4', '--eval-every', '1', '--lr', '0.01', '--progress', 'false']
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    assert _torchrun(args + ['--epochs', '4', '--out', full], 1, str(tmp_path)).returncode == 0
    assert _torchrun(args + ['--epochs', '2', '--out', cut], 1, str(tmp_path)).returncode == 0
    res = _torchrun(['--resume', cut, '--epochs', '4'], 2, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _history(osp.join(full, 'history.jsonl')), _history(osp.join(cut, 'history.jsonl'))
    assert [h['epoch'] for h in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert abs(x['val']['mrr'] - y['val']['mrr']) <= 1e-4, (x, y)


def test_comat_trains_under_two_processes(tmp_path):
    # CoMAT's critic and generator optimisers average their gradients too (its noise comes
    # from each rank's own stream, so the curve is not the one process's)
    folder = make_folder(tmp_path / 'kg')
    args = ['--dataset', folder, '--model', 'native', '--dim', '8', '--batch-size', '45',
            '--num-negatives', '4', '--epochs', '2', '--eval-every', '1', '--progress',
            'false', '--comat', '{}', '--out', str(tmp_path / 'two')]
    res = _torchrun(args, 2, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [h['epoch'] for h in _history(osp.join(tmp_path / 'two', 'history.jsonl'))] == [1, 2]


def test_a_batch_with_fewer_rows_than_ranks(tmp_path):
    # 234 1-N queries in batches of 233: the last holds one row for two ranks. Both train it
    # whole, so both join the collectives of TuckER's global batch norms (a rank skipping the
    # forward left the other waiting in a mismatched collective).
    folder = make_folder(tmp_path / 'kg')
    args = ['--dataset', folder, '--model', 'tucker', '--dim', '8', '--batch-size', '233',
            '--epochs', '2', '--eval-every', '1', '--progress', 'false',
            '--out', str(tmp_path / 'two')]
    res = _torchrun(args, 2, str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [h['epoch'] for h in _history(osp.join(tmp_path / 'two', 'history.jsonl'))] == [1, 2]
