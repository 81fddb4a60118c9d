r"""Train one of PyG's knowledge-graph-embedding models on a torch_mmkg dataset and evaluate it
under the filtered, both-sided protocol of the multi-modal KGC papers.

    python examples/pyg_kge_mkgy.py                      # TransE on MKG-Y, a few minutes on CPU
    python examples/pyg_kge_mkgy.py --model rotate --dataset MKG-W --epochs 500

The dataset (structure + the modalities its public raw files allow) comes from
:mod:`torch_mmkg.datasets`; PyG's structural models ignore the modality features, which is what
the structure-only rows of the papers' tables are. Model selection uses the cleaned validation
split; the test set is touched once, at the end.
"""
import argparse
import os.path as osp
import time

import torch
from torch_geometric.nn.kge import ComplEx, DistMult, RotatE, TransE

from torch_mmkg.data import ENTITY, KnownTriples, get_triples
from torch_mmkg.datasets import DB15K, KVC16K, MKGW, MKGY, TIVA, WN9IMG

DATASETS = {'MKG-W': MKGW, 'MKG-Y': MKGY, 'DB15K': DB15K, 'KVC16K': KVC16K, 'TIVA': TIVA,
            'WN9-IMG': WN9IMG}
MODELS = {'transe': TransE, 'rotate': RotatE, 'distmult': DistMult, 'complex': ComplEx}

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='MKG-Y', choices=list(DATASETS))
parser.add_argument('--model', default='transe', choices=list(MODELS))
parser.add_argument('--dim', type=int, default=100)
parser.add_argument('--epochs', type=int, default=100)
parser.add_argument('--lr', type=float, default=0.01)
parser.add_argument('--batch_size', type=int, default=1000)
parser.add_argument('--eval_every', type=int, default=20)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data'))
parser.add_argument('--save', default=None, help='where to save the selected model')
args = parser.parse_args()

torch.manual_seed(args.seed)
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

dataset = DATASETS[args.dataset](osp.join(args.root, args.dataset))
print(dataset.summary())
data = dataset[0]
N, R = data[ENTITY].num_nodes, data.num_relations
train = [t.to(device) for t in get_triples(data, 'train')]
val = [t.to(device) for t in get_triples(data, 'val_clean')]
test = [t.to(device) for t in get_triples(data, 'test')]
known = KnownTriples.from_data(data, 'all').to(device)  # filter: train + valid + test

kwargs = {'margin': 9.0} if args.model == 'rotate' else {}
model = MODELS[args.model](N, R, hidden_channels=args.dim, **kwargs).to(device)
loader = model.loader(head_index=train[0], rel_type=train[1], tail_index=train[2],
                      batch_size=args.batch_size, shuffle=True)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)


def train_epoch() -> float:
    model.train()
    total = count = 0
    for head, rel, tail in loader:
        optimizer.zero_grad()
        loss = model.loss(head, rel, tail)
        loss.backward()
        optimizer.step()
        total += float(loss) * head.numel()
        count += head.numel()
    return total / count


@torch.no_grad()
def evaluate(head, rel, tail, chunk: int = 16) -> dict:
    r"""Filtered ranks of the true tail of (h, r, ?) and head of (?, r, t) among all entities;
    ties count half (the realistic rank)."""
    model.eval()
    ranks = []
    cand = torch.arange(N, device=device)
    for side in ('tail', 'head'):
        for s in range(0, head.numel(), chunk):
            h, r, t = head[s:s + chunk], rel[s:s + chunk], tail[s:s + chunk]
            B = h.numel()
            hh = h.view(-1, 1).expand(B, N) if side == 'tail' else cand.expand(B, N)
            tt = cand.expand(B, N) if side == 'tail' else t.view(-1, 1).expand(B, N)
            scores = model(hh.reshape(-1), r.view(-1, 1).expand(B, N).reshape(-1),
                           tt.reshape(-1)).view(B, N)
            truth = t if side == 'tail' else h
            true_score = scores.gather(1, truth.view(-1, 1))
            other_known = known.filter_mask(h, r, t, side=side)
            other_known[torch.arange(B, device=device), truth] = False
            scores = scores.masked_fill(other_known, float('-inf'))
            higher = (scores > true_score).sum(1)
            ties = (scores == true_score).sum(1) - 1
            ranks.append(1 + higher + 0.5 * ties)
    ranks = torch.cat(ranks).float()
    return {'MRR': float((1 / ranks).mean()), 'MR': float(ranks.mean()),
            **{f'Hits@{k}': float((ranks <= k).float().mean()) for k in (1, 3, 10)}}


best, best_state = -1.0, None
t0 = time.perf_counter()
for epoch in range(1, args.epochs + 1):
    loss = train_epoch()
    if epoch % args.eval_every == 0 or epoch == args.epochs:
        mrr = evaluate(*val)['MRR']
        if mrr > best:
            best = mrr
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(f'Epoch {epoch:04d}, loss {loss:.4f}, val_clean MRR {mrr:.4f} (best {best:.4f}), '
              f'{time.perf_counter() - t0:.0f}s', flush=True)

model.load_state_dict(best_state)
metrics = evaluate(*test)
print(f"Test (filtered, both sides, model selected on val_clean): MRR {metrics['MRR']:.4f}, "
      f"MR {metrics['MR']:.1f}, Hits@1 {metrics['Hits@1']:.4f}, "
      f"Hits@3 {metrics['Hits@3']:.4f}, Hits@10 {metrics['Hits@10']:.4f}")
if args.save:
    torch.save(best_state, args.save)
    print(f'Saved the selected model to {args.save}')
