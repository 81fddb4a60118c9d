r"""Cost of NATIVE and of CoMAT on DB15K, side by side in one process.

    python benchmark/native_db15k.py                     # d=250, batch 1024, K=128
    python benchmark/native_db15k.py --dim 100 --batches 10

Measures, with the real DB15K features (numeric + text, missing ones masked):

* the CoMAT overhead: seconds per training batch of NATIVE with CoMAT (one critic and one
  generator step) divided by without, over the same batches, the two regimes alternating
  in blocks so that machine noise hits both alike (median of per-block ratios);
* evaluation: the filtered, both-sided test of NATIVE on the full DB15K test set divided by
  RotatE's (same d), medians over ``--repeats`` alternating runs.
"""
import argparse
import json
import os.path as osp
import statistics
import time

import torch

from torch_mmkg.data import ENTITY, KnownTriples, get_triples
from torch_mmkg.datasets import DB15K
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import NATIVE, RotatE
from torch_mmkg.training import CoMAT

from _runs import synchronize

parser = argparse.ArgumentParser()
parser.add_argument('--dim', type=int, default=250)
parser.add_argument('--batch_size', type=int, default=1024)
parser.add_argument('--num_negatives', type=int, default=128)
parser.add_argument('--batches', type=int, default=6, help='batches per timing block')
parser.add_argument('--blocks', type=int, default=3)
parser.add_argument('--repeats', type=int, default=3, help='evaluation runs per model')
parser.add_argument('--skip_eval', action='store_true')
parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'DB15K'))
parser.add_argument('--out', default=None, help='write the figures as JSON here')
args = parser.parse_args()
device = torch.device(args.device)


data = DB15K(args.root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
torch.manual_seed(0)
native = NATIVE.from_data(data, args.dim, margin=12.0).to(device)
h, r, t = (x.to(device) for x in get_triples(data, 'train'))
loader = native.loader(h, r, t, num_negatives=args.num_negatives, batch_size=args.batch_size,
                       shuffle=True, generator=torch.Generator(device=device).manual_seed(0))
batches = []
for batch in loader:
    batches.append(batch)
    if len(batches) == args.batches:
        break
comat = CoMAT(native)
opt = torch.optim.Adam(native.parameters(), lr=1e-4)
opt_g = torch.optim.Adam(comat.generator_parameters(), lr=1e-4)


def plain_block() -> float:
    synchronize(device)
    t0 = time.perf_counter()
    for batch in batches:
        opt.zero_grad(set_to_none=True)
        native.loss(*batch).backward()
        opt.step()
    synchronize(device)
    return (time.perf_counter() - t0) / len(batches)


def comat_block() -> float:
    synchronize(device)
    t0 = time.perf_counter()
    for batch in batches:
        comat.train_step(batch, opt, opt_g)
    synchronize(device)
    return (time.perf_counter() - t0) / len(batches)


native.train()
plain_block(), comat_block()  # warm-up (allocator, kernels)
plain, adv = [], []
for _ in range(args.blocks):
    plain.append(plain_block())
    adv.append(comat_block())
    print(f'per batch: without CoMAT {plain[-1]:.3f} s, with {adv[-1]:.3f} s', flush=True)
ratios = [a / p for a, p in zip(adv, plain)]
out = {'device': str(device), 'dim': args.dim, 'batch_size': args.batch_size,
       'num_negatives': args.num_negatives,
       'seconds_per_batch_without_comat': statistics.median(plain),
       'seconds_per_batch_with_comat': statistics.median(adv),
       'comat_overhead': statistics.median(ratios),
       'batches_per_epoch': len(loader)}
out['seconds_per_epoch_without_comat'] = out['seconds_per_batch_without_comat'] * len(loader)
out['seconds_per_epoch_with_comat'] = out['seconds_per_batch_with_comat'] * len(loader)
print(f"CoMAT overhead: {out['comat_overhead']:.2f}x (median of {args.blocks} blocks)")

if not args.skip_eval:
    known = KnownTriples.from_data(data, 'all').to(device)
    test = get_triples(data, 'test')
    rotate = RotatE(N, R, args.dim).to(device)
    evaluator = RankingEvaluator(known, progress=False)
    times = {'rotate': [], 'native': []}
    for rep in range(args.repeats + 1):  # the first run of each compiles kernels
        for name, model in (('rotate', rotate), ('native', native)):
            model.eval()
            synchronize(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                evaluator.evaluate(model, *test)
            synchronize(device)
            if rep:
                times[name].append(time.perf_counter() - t0)
                print(f'test evaluation {name}: {times[name][-1]:.2f} s', flush=True)
    out['eval_seconds_rotate'] = statistics.median(times['rotate'])
    out['eval_seconds_native'] = statistics.median(times['native'])
    out['eval_ratio'] = out['eval_seconds_native'] / out['eval_seconds_rotate']
    out['test_queries'] = 2 * test[0].numel()
    print(f"evaluation NATIVE / RotatE: {out['eval_ratio']:.2f}x")

print(json.dumps(out, indent=2))
if args.out:
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=2)
