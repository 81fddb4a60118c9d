r"""NATIVE (ReDAF + CoMAT) on DB15K with the real numeric and text features, missing ones
masked, in the style of PyG's ``examples/kge_fb15k_237.py``.

    python examples/native_db15k.py                          # ~10 minutes on 2 CPU cores
    python examples/native_db15k.py --no_comat               # "NATIVE w/o CoMAT"
    python examples/native_db15k.py --modalities text        # any subset of modalities
    python examples/native_db15k.py --dim 250 --num_negatives 128 --lr 1e-4 \
        --epochs 1000 --minutes 0 --eval_every 50            # the authors' settings (GPU)

Each entity is its learnable structural embedding plus, per modality, a two-layer MLP of its
frozen features; ReDAF fuses them with weights softmax(v . tanh(e_m) / sigmoid(zeta_r)) that
leave missing modalities out, and RotatE scores the joint embeddings. CoMAT alternates, per
batch, a critic step (the model, self-adversarial loss + mu * Wasserstein term + gradient
penalty) and a generator step (synthetic modality embeddings that the model should score
high). Selection on the cleaned validation split; the filtered, both-sided test is run once.
At the end, the relations that raise each modality's weight most (the paper's Figure 6).
Set ``TORCH_MMKG_MIRROR`` to a local mirror of the raw files to run offline.
"""
import argparse
import copy
import os.path as osp
import time

import torch

from torch_mmkg.analysis import relation_modality_weights
from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.datasets import DB15K
from torch_mmkg.evaluation import RankingEvaluator, entity_completeness
from torch_mmkg.nn import NATIVE
from torch_mmkg.training import CoMAT

parser = argparse.ArgumentParser()
parser.add_argument('--dim', type=int, default=100)
parser.add_argument('--margin', type=float, default=12.0)
parser.add_argument('--epochs', type=int, default=1000)
parser.add_argument('--minutes', type=float, default=10.0,
                    help='training time budget (0: none)')
parser.add_argument('--lr', type=float, default=1e-3)
parser.add_argument('--batch_size', type=int, default=1024)
parser.add_argument('--num_negatives', type=int, default=32)
parser.add_argument('--mu', type=float, default=1e-4, help='CoMAT adversarial weight')
parser.add_argument('--no_comat', action='store_true')
parser.add_argument('--modalities', nargs='*', default=None)
parser.add_argument('--eval_every', type=int, default=5)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'DB15K'))
parser.add_argument('--plot', default=None, help='save the modality-weight figure here')
args = parser.parse_args()

torch.manual_seed(args.seed)
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

data = DB15K(args.root)[0]
train = [x.to(device) for x in get_triples(data, 'train')]
val = get_triples(data, 'val_clean')
test = get_triples(data, 'test')
known = KnownTriples.from_data(data, 'all')  # the filter: train + valid + test

model = NATIVE.from_data(data, args.dim, modalities=args.modalities, margin=args.margin,
                         adversarial_temperature=2.0).to(device)
print(f"Modalities: {model.modalities}; present for "
      + ', '.join(f"{m} {float(model.representation.mask(m).float().mean()):.1%}"
                  for m in model.modalities))
generator = torch.Generator(device=device).manual_seed(args.seed)
loader = model.loader(*train, num_negatives=args.num_negatives, batch_size=args.batch_size,
                      shuffle=True, generator=generator)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
comat = None if args.no_comat else CoMAT(model, adversarial_weight=args.mu)
gen_optimizer = (None if comat is None else
                 torch.optim.Adam(comat.generator_parameters(), lr=args.lr))
evaluator = RankingEvaluator(known)


def train_epoch() -> str:
    model.train()
    totals = {}
    for batch in loader:
        if comat is not None:  # one critic step, then one generator step
            parts = comat.train_step(batch, optimizer, gen_optimizer)
        else:
            optimizer.zero_grad()
            loss = model.loss(*batch)
            loss.backward()
            optimizer.step()
            parts = {'loss': loss.detach()}
        for k, v in parts.items():
            totals[k] = totals.get(k, 0.0) + float(v) / len(loader)
    return ', '.join(f'{k}: {v:.4f}' for k, v in totals.items())


best_mrr, best_state, best_epoch = -1.0, None, 0
start = time.perf_counter()
for epoch in range(1, args.epochs + 1):
    losses = train_epoch()
    minutes = (time.perf_counter() - start) / 60
    out_of_time = 0 < args.minutes <= minutes
    if epoch % args.eval_every == 0 or epoch == args.epochs or out_of_time:
        val_res = evaluator.evaluate(model, *val).metrics()
        if val_res['mrr'] > best_mrr:
            best_mrr, best_epoch = val_res['mrr'], epoch
            best_state = copy.deepcopy(model.state_dict())
        print(f"Epoch: {epoch:03d}, {losses}, Minutes: {minutes:.1f}, "
              f"Val MRR: {val_res['mrr']:.4f}, Val Hits@10: {val_res['hits@10']:.4f}")
    if out_of_time:
        break

model.load_state_dict(best_state)
result = evaluator.evaluate(model, *test)
m = result.metrics()
print(f"Selected epoch {best_epoch} (val MRR {best_mrr:.4f}). Test ({result.seconds:.1f}s): "
      f"MRR: {m['mrr']:.4f}, MR: {m['mr']:.1f}, Hits@1: {m['hits@1']:.4f}, "
      f"Hits@3: {m['hits@3']:.4f}, Hits@10: {m['hits@10']:.4f}")
for group, met in result.by_completeness(entity_completeness(data)).items():
    print(f"  {group}: MRR {met['mrr']:.4f} ({met['count']} queries)")

analysis = relation_modality_weights(model, data, top_k=4)
t = analysis.temperature[analysis.count > 0]
print(f"sigma(zeta_r) over {t.numel()} relations: min {float(t.min()):.3f}, median "
      f"{float(t.median()):.3f}, max {float(t.max()):.3f}")
for modality, rows in analysis.top.items():
    print(f"  raises {modality:>9}: " + ', '.join(f'{name} (+{lift:.3f})'
                                                  for name, lift, _ in rows))
if args.plot:
    analysis.plot(args.plot)
