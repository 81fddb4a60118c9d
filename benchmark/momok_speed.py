r"""Seconds per epoch and peak memory of MoMoK training, beside TuckER, on MKG-W (or DB15K).

    python benchmark/momok_speed.py                     # d=200, batch 1024 (MKG-W's)
    python benchmark/momok_speed.py --dim 64 --batches 4

MoMoK paper, Table 3: 9.8 s per epoch and 5.9 GB of GPU memory. Measured here, with the real
features (missing ones masked), on the same 1-N batches:

* seconds per training step (loss, backward, Adam step and, for MoMoK, the CLUB estimator
  step), MoMoK and TuckER alternating in blocks so that machine noise hits both alike;
  seconds per epoch = median seconds per step times the number of 1-N batches of an epoch;
* peak memory of a fresh process doing a few steps of one model: resident set size on CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU;
* the seconds of one filtered, both-sided evaluation of the test split.
"""
import argparse
import gc
import json
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional

import torch

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='MKG-W', choices=['MKG-W', 'DB15K'])
parser.add_argument('--dim', type=int, default=200)
parser.add_argument('--batch_size', type=int, default=1024)
parser.add_argument('--batches', type=int, default=3, help='batches per timing block')
parser.add_argument('--blocks', type=int, default=3)
parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
parser.add_argument('--memory_of', default=None, choices=['momok', 'tucker'],
                    help='(internal) measure the peak memory of one model and exit')
parser.add_argument('--root', default=None)
parser.add_argument('--graph', default=None,
                    help='a graph file of benchmark/graphs.py to use instead of building')
parser.add_argument('--out', default=None, help='write the figures as JSON here')
args = parser.parse_args()
device = torch.device(args.device)
root = args.root or osp.join(osp.dirname(osp.realpath(__file__)), '..', 'data', args.dataset)

from torch_mmkg.data import ENTITY, KnownTriples, get_triples  # noqa: E402
from torch_mmkg.datasets import DB15K, MKGW  # noqa: E402
from torch_mmkg.evaluation import RankingEvaluator  # noqa: E402
from torch_mmkg.nn import MoMoK, TuckER  # noqa: E402

from _runs import synchronize  # noqa: E402

if args.graph:
    sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
    from graphs import load_graph
    data = load_graph(args.graph)
else:
    data = {'MKG-W': MKGW, 'DB15K': DB15K}[args.dataset](root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations


def build(name: str):
    torch.manual_seed(0)
    model = (MoMoK.from_data(data, args.dim) if name == 'momok' else
             TuckER(N, R, args.dim)).to(device)
    aux = {id(p) for p in model.auxiliary_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in aux], lr=1e-3)
    est = (torch.optim.Adam(model.auxiliary_parameters(), lr=1e-3) if aux else None)
    return model, opt, est


def step(model, opt, est, batch):
    opt.zero_grad(set_to_none=True)
    model.loss_1n(*batch).backward()
    opt.step()
    if est is not None:
        est.zero_grad(set_to_none=True)
        model.auxiliary_loss(batch[0]).backward()
        est.step()


h, r, t = (x.to(device) for x in get_triples(data, 'train'))
loader = TuckER(N, R, 4).loader_1n(h, r, t, batch_size=args.batch_size, shuffle=True,
                                   generator=torch.Generator(device=device).manual_seed(0))
batches = []
for batch in loader:
    batches.append(batch)
    if len(batches) == args.batches:
        break


def _status_kb(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


if args.memory_of:  # a fresh process: its peak is this model's
    model, opt, est = build(args.memory_of)
    model.train()
    gc.collect()
    try:  # Linux: reset the peak (VmHWM) so that loading the dataset does not count
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    before = _status_kb('VmRSS')
    for batch in batches:
        step(model, opt, est, batch)
    synchronize(device)
    out = {'cpu_max_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    peak = _status_kb('VmHWM')
    if before is not None and peak is not None:
        out['cpu_training_peak_rss_bytes'] = peak * 1024
        out['cpu_training_added_rss_bytes'] = (peak - before) * 1024
    if device.type == 'cuda':
        out['cuda_max_allocated_bytes'] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(out))
    sys.exit(0)

models = {name: build(name) for name in ('momok', 'tucker')}
for model, opt, est in models.values():  # warm-up
    model.train()
    step(model, opt, est, batches[0])
times = {name: [] for name in models}
ratios = []
for _ in range(args.blocks):
    block = {}
    for name, (model, opt, est) in models.items():
        synchronize(device)
        t0 = time.perf_counter()
        for batch in batches:
            step(model, opt, est, batch)
        synchronize(device)
        block[name] = (time.perf_counter() - t0) / len(batches)
        times[name].append(block[name])
    ratios.append(block['momok'] / block['tucker'])

known = KnownTriples.from_data(data, 'all')
evaluator = RankingEvaluator(known)
eval_seconds = {name: evaluator.evaluate(m[0], *get_triples(data, 'test')).seconds
                for name, m in models.items()}

memory = {}
for name in models:
    cmd = [sys.executable, __file__, '--memory_of', name, '--dataset', args.dataset, '--dim',
           str(args.dim), '--batch_size', str(args.batch_size), '--batches', '2',
           '--device', args.device, '--root', root]
    cmd += ['--graph', args.graph] if args.graph else []
    memory[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                             text=True).stdout.strip().splitlines()[-1])

result = {'settings': vars(args), 'batches_per_epoch': len(loader),
          'seconds_per_step': {k: statistics.median(v) for k, v in times.items()},
          'seconds_per_epoch': {k: statistics.median(v) * len(loader)
                                for k, v in times.items()},
          'momok_over_tucker': statistics.median(ratios),
          'test_eval_seconds': eval_seconds, 'peak_memory': memory}
for name in models:
    mem = memory[name]
    if device.type == 'cuda':
        peak = f"peak GPU {mem['cuda_max_allocated_bytes'] / 2**30:.2f} GB"
    else:
        peak = f"peak RSS {mem['cpu_max_rss_bytes'] / 2**30:.2f} GB"
        if 'cpu_training_peak_rss_bytes' in mem:
            peak = (f"peak RSS while training {mem['cpu_training_peak_rss_bytes'] / 2**30:.2f}"
                    f" GB (+{mem['cpu_training_added_rss_bytes'] / 2**30:.2f} GB over the "
                    f"loaded model and data)")
    print(f"{name:7s} {result['seconds_per_step'][name]:.3f} s/step, "
          f"{result['seconds_per_epoch'][name]:.1f} s/epoch ({len(loader)} steps), {peak}, "
          f"test evaluation {eval_seconds[name]:.1f} s")
print(f"MoMoK / TuckER per step: {result['momok_over_tucker']:.2f}x (median of "
      f"{args.blocks} blocks)")
if args.out:
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
