r"""The paper-size configs (``examples/configs``) and their structural backbones at the same
settings, trained side by side under one wall-clock budget on one machine (a GPU), for one or
more seeds.

    python benchmark/graphs.py --datasets MKG-W DB15K WN9-IMG --out .devdata   # where built
    python benchmark/paper_configs.py --graphs .devdata --minutes 5 --jobs 10 --out runs/paper
    python benchmark/paper_configs.py --merge runs/a/results.json runs/b/results.json \
        --out runs/paper                                        # one table of both

Each run is a config file of ``examples/configs`` (the authors' settings) or a backbone with the
same training settings, trained by :class:`~torch_mmkg.training.Trainer` for at most
``--minutes`` of training (the papers train 500-2000 epochs), selected by MRR on ``val_clean``
every ``--eval_every`` epochs and tested once for each of ``--seeds``: filtered, both
directions, realistic ranks (optimistic beside them). ``--jobs`` runs train concurrently, one
process each, sharing the machine: each run's epochs are then fewer than alone, and the table
says how many ran together. The graphs come from :mod:`graphs` files (``--graphs``), so that a
machine without the mirror or the sentence encoder can train on them. ``<out>/results.json``
gathers the runs and ``<out>/table.md`` is the table."""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

import torch

HERE = osp.dirname(osp.realpath(__file__))
sys.path.insert(0, HERE)
from _runs import METRICS, Summary  # noqa: E402
from graphs import load_graph  # noqa: E402

from torch_mmkg.nn.loss import MarginRankingLoss  # noqa: E402

CONFIGS = osp.join(HERE, '..', 'examples', 'configs')


class Run(NamedTuple):
    config: str  # a file of examples/configs
    model: Optional[str] = None  # replaces the config's model (a backbone)
    model_args: Optional[Dict[str, Any]] = None  # replaces the config's model_args if given
    model_update: Optional[Dict[str, Any]] = None  # updates the config's model_args
    train_update: Optional[Dict[str, Any]] = None  # updates the config's train section
    paper: Optional[float] = None  # test MRR (%) in the paper's table
    label: str = ''


#: VBKGC's TransE: d 128, L2-normalised, the margin-8 ranking loss over (positive, negative)
#: pairs (a loss object: a config file names losses without arguments).
_TRANSE_WN9 = {'hidden_channels': 128, 'normalize': True,
               'loss': MarginRankingLoss(8.0, aggregate='pairwise')}

#: Runs by name: each method with its authors' config and its backbone at the same settings.
RUNS: Dict[str, Run] = {
    'momok_mkgw': Run('momok_mkgw.yaml', paper=35.89,
                      label="MoMoK, authors' BCE (MoMoK Table 1)"),
    'momok_mkgw_softmax': Run('momok_mkgw.yaml', model_update={'objective': 'softmax'},
                              paper=35.89, label="MoMoK, paper's softmax (Eqs. 5-6)"),
    'tucker_mkgw_softmax': Run('momok_mkgw.yaml', model='tucker',
                               model_args={'hidden_channels': 200, 'relation_channels': 256},
                               train_update={'regime': '1-n', 'loss': 'softmax',
                                             'label_smoothing': 0.1},
                               paper=29.59, label="TuckER at MoMoK's settings, softmax"),
    'native_db15k': Run('native_db15k.yaml', paper=37.16,
                        label="NATIVE (ReDAF + CoMAT), authors' DB15K settings"),
    'rotate_db15k': Run('native_db15k.yaml', model='rotate',
                        model_args={'hidden_channels': 250, 'margin': 12.0,
                                    'adversarial_temperature': 2.0},
                        train_update={'comat': None}, paper=29.28,
                        label="RotatE at NATIVE's DB15K settings"),
    'lbmkgc_db15k': Run('lbmkgc_db15k.yaml', paper=37.23,
                        label="LBMKGC, authors' DB15K settings (lr 2e-5)"),
    'vbkgc_wn9': Run('vbkgc_wn9.yaml', train_update={'val_split': 'val_clean'}, paper=85.7,
                     label="VBKGC + twins, paper's WN9-IMG settings"),
    'transe_wn9': Run('vbkgc_wn9.yaml', model='transe',
                      model_args=_TRANSE_WN9,
                      train_update={'val_split': 'val_clean', 'twins': False}, paper=76.6,
                      label="TransE at VBKGC's settings"),
    'vbkgc_wn9_exclude': Run('vbkgc_wn9.yaml', train_update={
        'val_split': 'val_clean', 'exclude_query_entity': True}, paper=85.7,
        label='VBKGC + twins, query entity excluded'),
    'transe_wn9_exclude': Run('vbkgc_wn9.yaml', model='transe',
                              model_args=_TRANSE_WN9,
                              train_update={'val_split': 'val_clean', 'twins': False,
                                            'exclude_query_entity': True}, paper=76.6,
                              label='TransE, query entity excluded'),
    # MMKRL at our settings (no script exists), with and without its adversarial training, and
    # TransE with MMKRL's distance (L1 over L2-normalised arguments) and margin-6 ranking loss
    'mmkrl_mkgw': Run('mmkrl_mkgw.yaml', label='MMKRL without its adversarial part'),
    'mmkrl_adv_mkgw': Run('mmkrl_adv_mkgw.yaml', paper=30.10,
                          label='MMKRL + adversarial training (NATIVE Table 2, †)'),
    'transe_mkgw_mmkrl': Run('mmkrl_mkgw.yaml', model='transe',
                             model_args={'hidden_channels': 250, 'normalize': True,
                                         'loss': MarginRankingLoss(6.0)},
                             paper=29.19, label="TransE at MMKRL's settings"),
}


def resolve(name: str) -> Dict[str, Any]:
    r"""The config of run :obj:`name`: its file with the run's replacements."""
    from torch_mmkg.cli import load_config_file
    run = RUNS[name]
    cfg = load_config_file(osp.join(CONFIGS, run.config))
    if run.model is not None:
        cfg['model'] = run.model
    if run.model_args is not None:
        cfg['model_args'] = dict(run.model_args)
    cfg['model_args'] = {**cfg.get('model_args', {}), **(run.model_update or {})}
    train = {**cfg.get('train', {}), **(run.train_update or {})}
    cfg['train'] = {k: v for k, v in train.items() if v is not None}
    return cfg


def train_one(name: str, graphs: str, minutes: float, eval_every: int, device: str,
              out: str, seed: int = 0) -> Optional[Dict[str, Any]]:
    r"""Trains run :obj:`name` with :obj:`seed` under the budget; returns its entry (as
    :class:`_runs.Summary` records it under ``<out>/<name>/seed<seed>``)."""
    from torch_mmkg.cli import build_model
    from torch_mmkg.training import TrainConfig, seed_everything
    cfg = resolve(name)
    train = dict(cfg['train'], max_minutes=minutes, eval_every=eval_every, device=device,
                 checkpoint_every=0, progress=False, test=True, seed=seed)
    train_cfg = TrainConfig.from_dict(train)
    data = load_graph(osp.join(graphs, f"{cfg['dataset']}.pt"))
    seed_everything(train_cfg.seed)
    model = build_model(cfg, data)
    key = f'{name}/seed{seed}'
    summary = Summary(osp.join(out, name, f'seed{seed}'), {'run': key, 'minutes': minutes})
    return summary.run(key, model, data, train_cfg)


def _device_name(device: str) -> str:
    if device.startswith('cuda') or (device == 'auto' and torch.cuda.is_available()):
        return torch.cuda.get_device_name()
    return f'CPU ({platform.machine()}, {os.cpu_count()} cores)'


def _settings_line(s: Dict[str, Any]) -> str:
    return (f"{s['jobs']} runs at a time on one {s['device']} ({s['threads']} CPU threads "
            f"each), torch {s['torch']}, seeds {', '.join(map(str, s['seeds']))}")


def _cell(values: List[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2f} ± {std:.2f}'


def table(results: Dict[str, Any]) -> str:
    r"""The markdown table of :obj:`results` (:func:`main`'s ``results.json``, or several
    merged by :func:`merge`): per run, the mean ± std over its seeds."""
    parts = results['settings'] if isinstance(results['settings'], list) else [
        results['settings']]
    minutes = sorted({s['minutes'] for s in parts})
    lines = [f"Budget: {' / '.join(map(str, minutes))} min of training per run; "
             f"{'; '.join(_settings_line(s) for s in parts)}. Mean ± std over the seeds. "
             f"Protocol: filtered (train + valid + test), both directions, realistic ranks "
             f"(optimistic MRR beside them), selection by MRR on `val_clean`, one test "
             f"evaluation of the selected model; the query entity is a candidate of its own "
             f"query unless the row says otherwise.", '',
             '| run | dataset | MRR | H@1 | H@3 | H@10 | MRR (optimistic) | paper MRR | epochs '
             '(of the paper\'s) | s / epoch | seeds |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for name in RUNS:
        entries = [e for key, e in results['runs'].items() if key.split('/')[0] == name]
        if not entries:
            continue
        cfg, paper = resolve(name), RUNS[name].paper
        done = [e for e in entries if 'mrr' in e]
        failed = [e.get('error', e.get('diverged', 'no result')) for e in entries
                  if 'mrr' not in e]
        head = f"| {RUNS[name].label} | {cfg['dataset']} | "
        if not done:
            text = failed[0][:120].replace('|', '\\|')
            lines.append(f"{head}{text} | | | | | | | | {len(failed)} failed |")
            continue
        epochs = statistics.mean(e['epochs'] for e in done)
        lines.append(
            f"{head}{' | '.join(_cell([e[k] for e in done]) for k in METRICS)} | "
            f"{_cell([e['optimistic_mrr'] for e in done])} | "
            f"{'—' if paper is None else f'{paper:.2f}'} | {epochs:.0f} "
            f"({cfg['train'].get('epochs')}) | "
            f"{statistics.median(e['seconds_per_epoch'] for e in done):.2f} | {len(done)}"
            f"{f' (+{len(failed)} failed)' if failed else ''} |")
    return '\n'.join(lines) + '\n'


def merge(paths: List[str]) -> Dict[str, Any]:
    r"""The runs of several ``results.json`` files (e.g. seeds run on separate calls) as one
    results mapping whose settings list each file's."""
    merged: Dict[str, Any] = {'settings': [], 'runs': {}}
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        merged['settings'].append(part['settings'])
        for key, entry in part['runs'].items():
            if key in merged['runs']:
                raise ValueError(f"{path}: run {key!r} is in an earlier file too")
            merged['runs'][key] = entry
    return merged


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--graphs', default='.devdata')
    parser.add_argument('--runs', nargs='*', default=list(RUNS), choices=list(RUNS))
    parser.add_argument('--minutes', type=float, default=5.0)
    parser.add_argument('--eval_every', type=int, default=5)
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads per run (default: the cores shared among the jobs)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--out', default=osp.join('runs', 'paper_configs'))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--merge', nargs='+', default=None,
                        help='write the table of these results.json files to --out and exit')
    parser.add_argument('--one', default=None, help='(internal) train this run and exit')
    args = parser.parse_args(argv)
    if args.merge:
        os.makedirs(args.out, exist_ok=True)
        text = table(merge(args.merge))
        with open(osp.join(args.out, 'table.md'), 'w') as f:
            f.write(text)
        print(text)
        return 0
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    torch.set_num_threads(threads)
    if args.one:
        train_one(args.one, args.graphs, args.minutes, args.eval_every, args.device, args.out,
                  args.seeds[0])
        return 0
    os.makedirs(args.out, exist_ok=True)
    results: Dict[str, Any] = {'settings': {
        'minutes': args.minutes, 'jobs': args.jobs, 'threads': threads, 'seeds': args.seeds,
        'device': _device_name(args.device), 'torch': torch.__version__}, 'runs': {}}
    pending = [f'{name}/seed{seed}' for name in args.runs for seed in args.seeds]
    running: Dict[str, Any] = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            key = pending.pop(0)
            name, seed = key.split('/seed')
            log = open(osp.join(args.out, f'{name}_seed{seed}.log'), 'w')
            cmd = [sys.executable, osp.realpath(__file__), '--one', name, '--seeds', seed,
                   '--graphs', args.graphs, '--minutes', str(args.minutes), '--eval_every',
                   str(args.eval_every), '--device', args.device, '--out', args.out,
                   '--threads', str(threads)]
            running[key] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             env=env), log)
        time.sleep(1.0)
        for key, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[key]
            path = osp.join(args.out, key, 'summary.json')
            entry = json.load(open(path)).get(key) if osp.exists(path) else None
            if entry is None:
                with open(log.name) as f:
                    tail = f.read().strip().splitlines()
                entry = {'error': f"exit {proc.returncode}: {tail[-1] if tail else ''}"}
            results['runs'][key] = entry
            print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {key}: "
                  f"{entry.get('mrr', entry.get('error', entry.get('diverged')))}", flush=True)
            with open(osp.join(args.out, 'results.json'), 'w') as f:
                json.dump(results, f, indent=2)
            with open(osp.join(args.out, 'table.md'), 'w') as f:
                f.write(table(results))
    print(table(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
