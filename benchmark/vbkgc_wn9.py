r"""VBKGC with normal and with twins negative sampling against TransE on WN9-IMG (VBKGC's
Table 2), with the same settings and number of epochs for every row.

    python benchmark/vbkgc_wn9.py --epochs 60                  # CPU budget
    python benchmark/vbkgc_wn9.py --feature text               # MiniLM features instead

The ``_pairwise`` rows use one hinge per negative instead of Eq. 15's hinge on the mean negative
(``VBKGC(loss_aggregate='pairwise')``). Every run trains with
:class:`~torch_mmkg.training.Trainer` (``--num_negatives`` uniform negatives, about
``--num_batches`` batches per epoch as in the paper), selects its checkpoint on the validation
split every ``--eval_every`` epochs and is tested filtered on both sides; MRR and Hits are given
for realistic and for optimistic ranks (OpenKE's). The paper's
VBKGC feature is VisualBERT's [CLS]; ours is the 100-d doc2vec gloss embedding released with
the dataset (``--feature gloss``) or MiniLM over lemmas and gloss (``--feature text``).
"""
import argparse
import os.path as osp

from torch_mmkg.data import ENTITY
from torch_mmkg.datasets import WN9IMG
from torch_mmkg.nn import VBKGC, TransE
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.training import TrainConfig, seed_everything

from _runs import Summary

parser = argparse.ArgumentParser()
parser.add_argument('--feature', default='gloss')
parser.add_argument('--dim', type=int, default=128)
parser.add_argument('--num_negatives', type=int, default=16)
parser.add_argument('--margin', type=float, default=6.0)
parser.add_argument('--lr', type=float, default=1e-2)
parser.add_argument('--num_batches', type=int, default=100)
parser.add_argument('--epochs', type=int, default=60)
parser.add_argument('--eval_every', type=int, default=10)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--device', default='auto')
parser.add_argument('--only', nargs='*', default=None)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'WN9-IMG'))
parser.add_argument('--out', default=osp.join('runs', 'vbkgc_wn9'))
args = parser.parse_args()

data = WN9IMG(args.root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
data.modalities = [args.feature]  # the one feature VBKGC projects
batch_size = -(-int(data['entity', 'relation', 'entity'].train_mask.sum()) // args.num_batches)
RUNS = {
    'transe': (lambda: TransE(N, R, args.dim, loss=MarginRankingLoss(args.margin)), False),
    'vbkgc_normal': (lambda: VBKGC.from_data(data, args.dim, margin=args.margin), False),
    'vbkgc_twins': (lambda: VBKGC.from_data(data, args.dim, margin=args.margin), True),
    'vbkgc_normal_pairwise': (lambda: VBKGC.from_data(data, args.dim, margin=args.margin,
                                                      loss_aggregate='pairwise'), False),
    'vbkgc_twins_pairwise': (lambda: VBKGC.from_data(data, args.dim, margin=args.margin,
                                                     loss_aggregate='pairwise'), True),
}
summary = Summary(args.out, vars(args))
for name, (factory, twins) in RUNS.items():
    if args.only and name not in args.only:
        continue
    seed_everything(args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=batch_size, lr=args.lr,
                      num_negatives=args.num_negatives, twins=twins, val_split='val',
                      eval_every=args.eval_every, seed=args.seed, device=args.device,
                      progress=False)
    summary.run(name, factory(), data, cfg)
