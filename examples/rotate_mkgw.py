r"""RotatE on MKG-W under the papers' protocol, in the style of PyG's
``examples/kge_fb15k_237.py``.

    python examples/rotate_mkgw.py                        # ~15 minutes on 2 CPU cores
    python examples/rotate_mkgw.py --model transe
    python examples/rotate_mkgw.py --epochs 1000 --lr 1e-4 --num_negatives 128 --margin 4 \
        --temperature 2                                   # NATIVE's RotatE settings (GPU)

Training: K negatives per positive with the self-adversarial loss (RotatE, Eq. 5).
Evaluation: filtered against train + valid + test, both sides, all 15,000 entities, realistic
ranks; the model is selected on the cleaned validation split and the test split is touched
once, at the end. Set ``TORCH_MMKG_MIRROR`` to a local mirror of the raw files to run offline.
"""
import argparse
import copy
import os.path as osp
import time

import torch

from torch_mmkg.data import ENTITY, KnownTriples, get_triples
from torch_mmkg.datasets import MKGW
from torch_mmkg.evaluation import RankingEvaluator, relation_categories
from torch_mmkg.nn import RotatE, TransE

parser = argparse.ArgumentParser()
parser.add_argument('--model', default='rotate', choices=['rotate', 'transe'])
parser.add_argument('--dim', type=int, default=250)
parser.add_argument('--margin', type=float, default=6.0)
parser.add_argument('--temperature', type=float, default=1.0)
parser.add_argument('--epochs', type=int, default=1000)
parser.add_argument('--minutes', type=float, default=15.0, help='training time budget')
parser.add_argument('--lr', type=float, default=1e-3)
parser.add_argument('--batch_size', type=int, default=1024)
parser.add_argument('--num_negatives', type=int, default=64)
parser.add_argument('--eval_every', type=int, default=5)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'MKG-W'))
parser.add_argument('--save', default=None, help='where to save the selected model')
args = parser.parse_args()

torch.manual_seed(args.seed)
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

data = MKGW(args.root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
train = [x.to(device) for x in get_triples(data, 'train')]
val = get_triples(data, 'val_clean')
test = get_triples(data, 'test')
known = KnownTriples.from_data(data, 'all')  # the filter: train + valid + test

Model = {'rotate': RotatE, 'transe': TransE}[args.model]
model = Model(N, R, args.dim, margin=args.margin,
              adversarial_temperature=args.temperature).to(device)
generator = torch.Generator(device=device).manual_seed(args.seed)
loader = model.loader(*train, num_negatives=args.num_negatives, batch_size=args.batch_size,
                      shuffle=True, generator=generator)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
evaluator = RankingEvaluator(known, batch_size=512)


def train_epoch() -> float:
    model.train()
    total = 0.0
    for batch in loader:
        optimizer.zero_grad()
        loss = model.loss(*batch)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total / len(loader)


best_mrr, best_state, best_epoch = -1.0, None, 0
start = time.perf_counter()
for epoch in range(1, args.epochs + 1):
    loss = train_epoch()
    minutes = (time.perf_counter() - start) / 60
    out_of_time = minutes >= args.minutes
    if epoch % args.eval_every == 0 or epoch == args.epochs or out_of_time:
        val_res = evaluator.evaluate(model, *val).metrics()
        if val_res['mrr'] > best_mrr:
            best_mrr, best_epoch = val_res['mrr'], epoch
            best_state = copy.deepcopy(model.state_dict())
        print(f"Epoch: {epoch:03d}, Loss: {loss:.4f}, Minutes: {minutes:.1f}, "
              f"Val MRR: {val_res['mrr']:.4f}, Val Hits@10: {val_res['hits@10']:.4f}")
    if out_of_time:
        break

model.load_state_dict(best_state)
result = evaluator.evaluate(model, *test)
m = result.metrics()
print(f"Selected epoch {best_epoch} (val MRR {best_mrr:.4f}). Test ({result.seconds:.1f}s): "
      f"MRR: {m['mrr']:.4f}, MR: {m['mr']:.1f}, Hits@1: {m['hits@1']:.4f}, "
      f"Hits@3: {m['hits@3']:.4f}, Hits@10: {m['hits@10']:.4f}")
opt = result.metrics('optimistic')
print(f"Optimistic ranks (OpenKE's tie rule): MRR: {opt['mrr']:.4f}, "
      f"Hits@10: {opt['hits@10']:.4f}")
for name, per_side in result.by_category(relation_categories(*get_triples(data, 'all'),
                                                             R)).items():
    print(f"  {name:>4}: head MRR {per_side['head']['mrr']:.4f}, "
          f"tail MRR {per_side['tail']['mrr']:.4f} ({per_side['both']['count']} queries)")
if args.save:
    torch.save(model.state_dict(), args.save)
