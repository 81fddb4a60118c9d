r"""Train one of PyG's knowledge-graph-embedding models on a torch_mmkg dataset and evaluate it
under the filtered, both-sided protocol of the multi-modal KGC papers.

    python examples/pyg_kge_mkgy.py                      # RotatE on MKG-Y, about 2 minutes on CPU
    python examples/pyg_kge_mkgy.py --model complex --dataset DB15K --epochs 300

The dataset (structure + the modalities its public raw files allow) comes from
:mod:`torch_mmkg.datasets`; PyG's structural models ignore the modality features, which is what
the structure-only rows of the papers' tables are. Model selection uses the cleaned validation
split; the test set is touched once, at the end.
"""
import argparse
import os.path as osp
import time

import torch
import torch.nn.functional as F
from torch_geometric.nn.kge import ComplEx, DistMult, RotatE, TransE

from torch_mmkg.data import ENTITY, KnownTriples, get_triples
from torch_mmkg.datasets import DB15K, KVC16K, MKGW, MKGY, TIVA, WN9IMG

DATASETS = {'MKG-W': MKGW, 'MKG-Y': MKGY, 'DB15K': DB15K, 'KVC16K': KVC16K, 'TIVA': TIVA,
            'WN9-IMG': WN9IMG}
MODELS = {'transe': TransE, 'rotate': RotatE, 'distmult': DistMult, 'complex': ComplEx}

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='MKG-Y', choices=list(DATASETS))
parser.add_argument('--model', default='rotate', choices=list(MODELS))
parser.add_argument('--dim', type=int, default=200)
parser.add_argument('--epochs', type=int, default=150)
parser.add_argument('--lr', type=float, default=0.01)
parser.add_argument('--batch_size', type=int, default=1000)
parser.add_argument('--eval_every', type=int, default=25)
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
        total += float(loss.detach()) * head.numel()
        count += head.numel()
    return total / count


def score_all(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, side: str) -> torch.Tensor:
    r"""Scores of (h, r, e) for every entity e (side='tail'), or of (e, r, t) (side='head'),
    as a [B, N] matrix, in closed form for PyG's four models (a matrix product or a batched
    distance instead of N calls of forward)."""
    E = model.node_emb.weight
    if isinstance(model, TransE):
        En = F.normalize(E, p=model.p_norm, dim=-1)
        rel = model.rel_emb(r)
        q = En[h] + rel if side == 'tail' else En[t] - rel
        return -torch.cdist(q, En, p=model.p_norm)
    if isinstance(model, DistMult):
        q = model.node_emb(h if side == 'tail' else t) * model.rel_emb(r)
        return q @ E.t()
    if isinstance(model, ComplEx):
        E_im, r_re, r_im = model.node_emb_im.weight, model.rel_emb(r), model.rel_emb_im(r)
        if side == 'tail':  # Re<h, r, conj(e)>
            a_re, a_im = E[h], E_im[h]
            q_re, q_im = a_re * r_re - a_im * r_im, a_re * r_im + a_im * r_re
        else:  # Re<e, r, conj(t)>
            b_re, b_im = E[t], E_im[t]
            q_re, q_im = r_re * b_re + r_im * b_im, r_re * b_im - r_im * b_re
        return q_re @ E.t() + q_im @ E_im.t()
    # RotatE: margin - ||h o r - t||_2 over the concatenated real and imaginary parts; the
    # rotation is unitary, so for heads ||e o r - t|| = ||e - t o conj(r)||.
    E_im, theta = model.node_emb_im.weight, model.rel_emb(r)
    c, s_ = torch.cos(theta), torch.sin(theta)
    if side == 'tail':
        q_re, q_im = c * E[h] - s_ * E_im[h], c * E_im[h] + s_ * E[h]
    else:
        q_re, q_im = c * E[t] + s_ * E_im[t], c * E_im[t] - s_ * E[t]
    return model.margin - torch.cdist(torch.cat([q_re, q_im], -1), torch.cat([E, E_im], -1))


@torch.no_grad()
def check_scorer():
    r"""The closed forms must equal PyG's forward on random triples."""
    model.eval()
    h, r, t = (torch.randint(n, (64, ), device=device) for n in (N, R, N))
    ref = model(h, r, t)
    for side in ('tail', 'head'):
        idx = t if side == 'tail' else h
        got = score_all(h, r, t, side).gather(1, idx.view(-1, 1)).view(-1)
        if not torch.allclose(got, ref, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f'closed-form {side} scores disagree with {model}.forward')


@torch.no_grad()
def evaluate(head, rel, tail, chunk: int = 256) -> dict:
    r"""Filtered ranks of the true tail of (h, r, ?) and head of (?, r, t) among all entities
    (known triples of train, valid and test removed, except the true one); ties count half
    (the realistic rank)."""
    model.eval()
    ranks = []
    for side in ('tail', 'head'):
        for s in range(0, head.numel(), chunk):
            h, r, t = head[s:s + chunk], rel[s:s + chunk], tail[s:s + chunk]
            scores = score_all(h, r, t, side)
            truth = t if side == 'tail' else h
            true_score = scores.gather(1, truth.view(-1, 1))
            other_known = known.filter_mask(h, r, t, side=side)
            other_known[torch.arange(h.numel(), device=device), truth] = False
            scores = scores.masked_fill(other_known, float('-inf'))
            higher = (scores > true_score).sum(1)
            ties = (scores == true_score).sum(1) - 1
            ranks.append(1 + higher + 0.5 * ties)
    ranks = torch.cat(ranks).float()
    return {'MRR': float((1 / ranks).mean()), 'MR': float(ranks.mean()),
            **{f'Hits@{k}': float((ranks <= k).float().mean()) for k in (1, 3, 10)}}


check_scorer()
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
