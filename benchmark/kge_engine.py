r"""Speed of the KGE engine on MKG-W, side by side with PyG's ``KGEModel.test()``.

    python benchmark/kge_engine.py                    # evaluation + one training epoch
    python benchmark/kge_engine.py --pyg_queries 200  # more PyG queries for its rate
    python benchmark/kge_engine.py --model_path runs/rotate/best_model.pt

Measures, for RotatE with d=250 on MKG-W (15,000 entities, 4,274 test triples):

* our filtered, both-sided ``test()`` (8,548 queries against all entities), in queries per
  second, with the peak memory it adds;
* PyG's own ``torch_geometric.nn.kge.KGEModel.test()`` (raw, tail side, one query at a time)
  on the *same* model (our forward wrapped in a PyG ``KGEModel``), on the first
  ``--pyg_queries`` test triples, in queries per second;
* seconds per training epoch at batch 1024, 128 negatives per positive, and peak memory.

Speed is quoted as a ratio measured in the same process; medians over ``--repeats`` runs.
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import time

import torch
from torch_geometric.nn.kge import KGEModel as PyGKGEModel

from torch_mmkg.data import ENTITY, KnownTriples, get_triples
from torch_mmkg.data.serialization import safe_load
from torch_mmkg.datasets import MKGW
from torch_mmkg.nn import RotatE, kernels

from _runs import synchronize

parser = argparse.ArgumentParser()
parser.add_argument('--dim', type=int, default=250)
parser.add_argument('--pyg_queries', type=int, default=100)
parser.add_argument('--repeats', type=int, default=3)
parser.add_argument('--train_batches', type=int, default=0,
                    help='time this many batches instead of a whole epoch (0: whole epoch)')
parser.add_argument('--eager', action='store_true', help='disable torch.compile kernels')
parser.add_argument('--model_path', default=None)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'MKG-W'))
parser.add_argument('--out', default=None, help='write the figures as JSON here')
args = parser.parse_args()
if args.eager:
    kernels.set_compile(False)

device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
torch.manual_seed(0)
data = MKGW(args.root)[0]
N, R = data[ENTITY].num_nodes, data.num_relations
test = [x.to(device) for x in get_triples(data, 'test')]
known = KnownTriples.from_data(data, 'all').to(device)
model = RotatE(N, R, args.dim).to(device)
if args.model_path:
    model.load_state_dict(safe_load(args.model_path, 'model state', map_location=device))
model.eval()


def rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


out = {'device': str(device), 'threads': torch.get_num_threads(), 'dim': args.dim,
       'compile': not args.eager}

# Ours: filtered, both sides, all entities. ###################################################
model.test(*[x[:64] for x in test], log=False, known=known)  # warm-up/compile
rss0 = rss()
times = []
for _ in range(args.repeats):
    synchronize(device)
    t0 = time.perf_counter()
    mr, mrr, hits = model.test(*test, log=False, known=known)
    synchronize(device)
    times.append(time.perf_counter() - t0)
queries = 2 * test[0].numel()
out['ours'] = {'queries': queries, 'seconds_median': statistics.median(times),
               'seconds_all': times, 'queries_per_second': queries / statistics.median(times),
               'added_peak_rss_bytes': rss() - rss0, 'mrr': mrr, 'mr': mr, 'hits@10': hits}
if device.type == 'cuda':
    out['ours']['cuda_max_allocated_bytes'] = torch.cuda.max_memory_allocated(device)
print('ours', json.dumps(out['ours']))


# PyG's test() on the same model. ############################################################
class Wrapped(PyGKGEModel):
    def __init__(self, inner):
        super().__init__(inner.num_nodes, inner.num_relations, 1)
        self.inner = inner

    def forward(self, head_index, rel_type, tail_index):
        return self.inner(head_index, rel_type, tail_index)


pyg = Wrapped(model).to(device).eval()
S = min(args.pyg_queries, test[0].numel())
synchronize(device)
t0 = time.perf_counter()
pyg_mr, pyg_mrr, pyg_hits = pyg.test(*[x[:S] for x in test], batch_size=20000, log=False)
synchronize(device)
pyg_seconds = time.perf_counter() - t0
out['pyg'] = {'queries': S, 'seconds': pyg_seconds, 'queries_per_second': S / pyg_seconds,
              'raw_tail_mrr': pyg_mrr}
# Our raw tail-side ranks on the same queries, as a cross-check of the two rankings.
_, raw_mrr, _ = model.test(*[x[:S] for x in test], batch_size=512, log=False, side='tail',
                           rank='pessimistic')
out['ours_raw_tail_mrr_same_queries'] = raw_mrr
out['speedup_queries_per_second'] = out['ours']['queries_per_second'] / \
    out['pyg']['queries_per_second']
out['pyg_estimated_seconds_tail_side_full_test'] = test[0].numel() / \
    out['pyg']['queries_per_second']
print('pyg', json.dumps(out['pyg']), 'speedup', round(out['speedup_queries_per_second'], 1))

# Training: batch 1024, 128 negatives, d=250. #################################################
train = [x.to(device) for x in get_triples(data, 'train')]
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = model.loader(*train, num_negatives=128, batch_size=1024, shuffle=True)


def run_batches(limit):
    n = 0
    for batch in loader:
        optimizer.zero_grad()
        model.loss(*batch).backward()
        optimizer.step()
        n += 1
        if limit and n >= limit:
            break
    synchronize(device)
    return n


run_batches(3)  # warm-up (compilation)
rss0 = rss()
epoch_times = []
for _ in range(args.repeats if not args.train_batches else 1):
    t0 = time.perf_counter()
    n = run_batches(args.train_batches)
    epoch_times.append((time.perf_counter() - t0) * len(loader) / n)
out['train'] = {'batches_per_epoch': len(loader), 'seconds_per_epoch_median':
                statistics.median(epoch_times), 'seconds_per_epoch_all': epoch_times,
                'added_peak_rss_bytes': rss() - rss0, 'peak_rss_bytes': rss()}
print('train', json.dumps(out['train']))
if args.out:
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=2)
