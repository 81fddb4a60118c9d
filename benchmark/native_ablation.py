r"""RotatE, NATIVE and the ablations of NATIVE's Table 4 on DB15K, one budget and seed for all.

    python benchmark/native_ablation.py --out runs/native_ablation            # CPU budget
    python benchmark/native_ablation.py --dim 250 --num_negatives 128 \
        --epochs 1000 --lr 1e-4 --eval_every 50 --out runs/native_full       # the paper's
    python benchmark/native_ablation.py --only full rotate                    # a subset

Every run trains with :class:`~torch_mmkg.training.Trainer` on the real DB15K features
(numeric + text, missing ones masked), selects its checkpoint on the cleaned validation
split, and is tested filtered on both sides; the summary table (MRR / Hits@1 / Hits@10, in
%) and each run's ``results.json`` are written under ``--out``. The paper's ReDAF ablations
(G2) are run with CoMAT, as in its table.
"""
import argparse
import json
import os
import os.path as osp
import time

from torch_mmkg.data import ENTITY
from torch_mmkg.datasets import DB15K
from torch_mmkg.nn import NATIVE, RotatE
from torch_mmkg.training import TrainConfig, Trainer, TrainingDivergedError, seed_everything

#: name -> (model keyword arguments, CoMAT options or None)
RUNS = {
    'rotate': (None, None),
    'native_wo_comat': ({}, None),
    'full': ({}, {}),
    'wo_P_m': ({'projection_layers': 1}, {}),
    'wo_zeta_r': ({'relation_temperature': False}, {}),
    'wo_omega_m': ({'fusion': 'mean'}, {}),
    'concat': ({'fusion': 'concat'}, {}),
    'product': ({'fusion': 'product'}, {}),
    'wo_gp': ({}, {'gradient_penalty': 0.0}),
    'vanilla_gan': ({}, {'gan_loss': 'vanilla'}),
    'mlp_discriminator': ({}, {'discriminator': 'mlp'}),
}

parser = argparse.ArgumentParser()
parser.add_argument('--dim', type=int, default=100)
parser.add_argument('--num_negatives', type=int, default=32)
parser.add_argument('--batch_size', type=int, default=1024)
parser.add_argument('--epochs', type=int, default=12)
parser.add_argument('--eval_every', type=int, default=4)
parser.add_argument('--lr', type=float, default=1e-3)
parser.add_argument('--margin', type=float, default=12.0)
parser.add_argument('--adversarial_weight', type=float, default=1e-4)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--device', default='auto')
parser.add_argument('--only', nargs='*', default=None, choices=list(RUNS))
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'DB15K'))
parser.add_argument('--out', default=osp.join('runs', 'native_ablation'))
args = parser.parse_args()

data = DB15K(args.root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
os.makedirs(args.out, exist_ok=True)
summary_path = osp.join(args.out, 'summary.json')
summary = json.load(open(summary_path)) if osp.exists(summary_path) else {}
for name, (model_args, comat) in RUNS.items():
    if args.only and name not in args.only:
        continue
    seed_everything(args.seed)
    common = dict(margin=args.margin, adversarial_temperature=2.0)
    model = (RotatE(N, R, args.dim, **common) if model_args is None else
             NATIVE.from_data(data, args.dim, **common, **model_args))
    if comat is not None:
        comat = {'adversarial_weight': args.adversarial_weight, **comat}
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      num_negatives=args.num_negatives, eval_every=args.eval_every,
                      seed=args.seed, device=args.device, progress=False, comat=comat)
    t0 = time.perf_counter()
    try:
        res = Trainer(model, data, cfg, out_dir=osp.join(args.out, name)).fit()
    except TrainingDivergedError as e:  # a diverged run is a result too
        summary[name] = {'diverged': str(e), 'minutes': (time.perf_counter() - t0) / 60}
        print(f"{name:18s} diverged: {e}", flush=True)
        continue
    test = res['test']['realistic']['both']
    summary[name] = {'mrr': 100 * test['mrr'], 'hits@1': 100 * test['hits@1'],
                     'hits@10': 100 * test['hits@10'], 'best_epoch': res['best_epoch'],
                     'seconds_per_epoch': res['seconds_per_epoch_median'],
                     'minutes': (time.perf_counter() - t0) / 60}
    print(f"{name:18s} MRR {summary[name]['mrr']:6.2f}  H@1 {summary[name]['hits@1']:6.2f}  "
          f"H@10 {summary[name]['hits@10']:6.2f}  ({summary[name]['seconds_per_epoch']:.1f} "
          f"s/epoch)", flush=True)
    with open(summary_path, 'w') as f:
        json.dump({'settings': vars(args), **{k: v for k, v in summary.items()
                                              if k != 'settings'}}, f, indent=2)
