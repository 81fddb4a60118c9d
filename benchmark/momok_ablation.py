r"""MoMoK against TuckER (structure only) and NATIVE, and the ablations of MoMoK's Table 2,
on MKG-W or DB15K with our real features, one wall-clock budget and seed for all.

    python benchmark/momok_ablation.py --dataset MKG-W --out runs/momok_mkgw   # CPU budget
    python benchmark/momok_ablation.py --dataset DB15K --only momok tucker native
    python benchmark/momok_ablation.py --dataset MKG-W --dim 200 --batch_size 1024 \
        --epochs 2000 --minutes 0 --eval_every 50 --out runs/momok_full       # the paper's

Every run trains with :class:`~torch_mmkg.training.Trainer` (1-N for MoMoK and TuckER, with
``--batch_size`` and ``--lr``; negative sampling for NATIVE with its own batch 1024 and lr
1e-3) until ``--minutes`` (``--ablation_minutes`` for the ablation rows) of training have
passed, selects its checkpoint on the cleaned validation split every ``--eval_every`` epochs,
and is tested filtered on both sides (realistic ranks). A wall-clock budget is the fair one on a
CPU: MoMoK costs several times TuckER's seconds per epoch. The summary (MRR / Hits@1/3/10 in %,
seconds per epoch, peak memory) and each run's ``results.json`` are written under ``--out``. The
single-modality rows train a MoMoK with that scorer alone, as the paper does.
"""
import argparse
import os.path as osp

from torch_mmkg.data import ENTITY
from torch_mmkg.data.mmkg import modality_features
from torch_mmkg.datasets import DB15K, MKGW
from torch_mmkg.nn import NATIVE, MoMoK, TuckER
from torch_mmkg.training import TrainConfig, seed_everything

from _runs import Summary

DATASETS = {'MKG-W': MKGW, 'DB15K': DB15K}
#: NATIVE's margin per dataset (the authors' DB15K value; RotatE's tuned MKG-W value).
MARGIN = {'MKG-W': 6.0, 'DB15K': 12.0}

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='MKG-W', choices=list(DATASETS))
parser.add_argument('--dim', type=int, default=64, help='MoMoK and TuckER embedding size')
parser.add_argument('--native_dim', type=int, default=100, help='NATIVE complex size')
parser.add_argument('--num_negatives', type=int, default=32, help='NATIVE negatives')
parser.add_argument('--batch_size', type=int, default=128)
parser.add_argument('--epochs', type=int, default=1000)
parser.add_argument('--minutes', type=float, default=6.0, help='training budget per run')
parser.add_argument('--ablation_minutes', type=float, default=4.0)
parser.add_argument('--eval_every', type=int, default=2)
parser.add_argument('--lr', type=float, default=3e-3)
parser.add_argument('--club_weight', type=float, default=1e-4)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--device', default='auto')
parser.add_argument('--only', nargs='*', default=None)
parser.add_argument('--root', default=None)
parser.add_argument('--out', default=None)
args = parser.parse_args()

root = args.root or osp.join(osp.dirname(osp.realpath(__file__)), '..', 'data', args.dataset)
data = DATASETS[args.dataset](root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
modalities = list(modality_features(data))
out = args.out or osp.join('runs', f"momok_{args.dataset.lower().replace('-', '')}")

#: name -> model factory
RUNS = {
    'momok': lambda: MoMoK.from_data(data, args.dim, club_weight=args.club_weight),
    'tucker': lambda: TuckER(N, R, args.dim),
    'native': lambda: NATIVE.from_data(data, args.native_dim, margin=MARGIN[args.dataset],
                                       adversarial_temperature=2.0),
}
for s in ['structure'] + modalities + ['joint']:
    RUNS[f'only_{s}'] = (lambda s=s: MoMoK.from_data(data, args.dim, scorers=[s],
                                                     club_weight=args.club_weight))
for name, kw in [('wo_eps_r', {'relation_temperature': False}),
                 ('wo_noise', {'noisy_gating': False}),
                 ('wo_adaptive_fusion', {'adaptive_fusion': False}),
                 ('wo_joint_training', {'joint_training': False}),
                 ('wo_exid', {'club_weight': 0.0})]:
    RUNS[name] = (lambda kw=kw: MoMoK.from_data(data, args.dim, **{
        'club_weight': args.club_weight, **kw}))
unknown = sorted(set(args.only or []) - set(RUNS))
if unknown:
    parser.error(f"unknown runs {unknown}; known: {list(RUNS)}")

summary = Summary(out, vars(args))
print(f"{args.dataset}: {N} entities, {R} relations, modalities {modalities}", flush=True)
for name, factory in RUNS.items():
    if args.only and name not in args.only:
        continue
    seed_everything(args.seed)
    model = factory()
    main = name in ('momok', 'tucker', 'native')
    minutes = args.minutes if main else args.ablation_minutes
    cfg = TrainConfig(epochs=args.epochs, batch_size=1024 if name == 'native' else
                      args.batch_size, lr=1e-3 if name == 'native' else args.lr,
                      num_negatives=args.num_negatives, eval_every=args.eval_every,
                      max_minutes=minutes or None, seed=args.seed, device=args.device,
                      progress=False)
    summary.run(name, model, data, cfg)
