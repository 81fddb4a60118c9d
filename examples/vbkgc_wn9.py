r"""VBKGC with twins negative sampling on WN9-IMG (VBKGC's own benchmark), with the real
gloss features, in the style of PyG's ``examples/kge_fb15k_237.py``.

    python examples/vbkgc_wn9.py                       # twins, about 3 minutes on 2 CPU cores
    python examples/vbkgc_wn9.py --sampling normal     # VBKGC + normal negative sampling
    python examples/vbkgc_wn9.py --feature text        # the MiniLM text features instead
    python examples/vbkgc_wn9.py --visualbert /path/to/visualbert-vqa-coco-pre \
        --tokenizer /path/to/bert-base-uncased         # the paper's [CLS] features

Each entity has a structural embedding e_s and a multi-modal embedding e_m = W h (Eq. 3), h
being a frozen entity feature: by default the 100-d doc2vec embedding of its WordNet gloss
released with the dataset; with ``--visualbert`` the [CLS] state of a local VisualBERT over
its lemmas and gloss (WN9-IMG's images are only ImageNet ids, so every entity takes the
paper's Xavier-initialised visual token). The score adds five TransE scores over (e_s, e_m)
of head and tail (Eqs. 4-9), trained with the margin loss against the mean of the k
negatives (Eq. 15). With twins negative sampling the cross-modal terms replace only the
multi-modal embedding of the corrupted entity. Selection on the validation split, then the
filtered both-sided test on the selected model.
Set ``TORCH_MMKG_MIRROR`` to a local mirror of the raw files to run offline.
"""
import argparse
import copy
import os.path as osp
import time

import torch

from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.datasets import WN9IMG
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import VBKGC

parser = argparse.ArgumentParser()
parser.add_argument('--sampling', default='twins', choices=['twins', 'normal'])
parser.add_argument('--feature', default='gloss', help="'gloss' or 'text'")
parser.add_argument('--visualbert', default=None, help='local VisualBERT model directory')
parser.add_argument('--tokenizer', default=None, help='its tokenizer (default: the model)')
parser.add_argument('--dim', type=int, default=128)
parser.add_argument('--num_negatives', type=int, default=16)
parser.add_argument('--margin', type=float, default=6.0)
parser.add_argument('--lr', type=float, default=1e-2)
parser.add_argument('--loss', default='pairwise', choices=['pairwise', 'mean'],
                    help="'mean' is Eq. 15 as printed (it stalls early, see the README)")
parser.add_argument('--num_batches', type=int, default=100, help='batches per epoch')
parser.add_argument('--epochs', type=int, default=1000)
parser.add_argument('--minutes', type=float, default=2.5, help='time budget (0: none)')
parser.add_argument('--eval_every', type=int, default=10)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                               'data', 'WN9-IMG'))
args = parser.parse_args()

torch.manual_seed(args.seed)
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
data = WN9IMG(args.root)[0]
if args.visualbert:  # the paper's encoder: [CLS] of VisualBERT over text and visual tokens
    from torch_mmkg.datasets.features import VisualBertEncoder
    from torch_mmkg.datasets.features.text import wn9_texts
    dataset = WN9IMG(args.root)
    texts = wn9_texts(data['entity'].name, dataset.raw('entity2description.pkl'),
                      dataset.raw('words.txt'))
    encoder = VisualBertEncoder(args.visualbert, args.tokenizer, device=device,
                                missing_image='xavier', seed=args.seed)
    features, mask = encoder.encode_entities(texts)
    features, masks = {'visualbert': features}, {'visualbert': mask}
else:
    ent = data['entity']
    features = {args.feature: ent[f'x_{args.feature}']}
    masks = {args.feature: ent[f'mask_{args.feature}']}

train = [x.to(device) for x in get_triples(data, 'train')]
val, test = get_triples(data, 'val'), get_triples(data, 'test')
known = KnownTriples.from_data(data, 'all')
model = VBKGC(data['entity'].num_nodes, data.num_relations, args.dim, features, masks,
              margin=args.margin, loss_aggregate=args.loss).to(device)
print(model)
batch_size = -(-train[0].numel() // args.num_batches)
loader = model.loader(*train, num_negatives=args.num_negatives, batch_size=batch_size,
                      shuffle=True, twins=args.sampling == 'twins',
                      generator=torch.Generator(device=device).manual_seed(args.seed))
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
evaluator = RankingEvaluator(known)


def train_epoch() -> float:
    model.train()
    total = 0.0
    for head, rel, tail, negatives in loader:
        optimizer.zero_grad()
        loss = model.loss(head, rel, tail, negatives)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) / len(loader)
    return total


best_mrr, best_state, best_epoch = -1.0, None, 0
start = time.perf_counter()
for epoch in range(1, args.epochs + 1):
    loss = train_epoch()
    minutes = (time.perf_counter() - start) / 60
    out_of_time = 0 < args.minutes <= minutes
    if epoch % args.eval_every == 0 or epoch == args.epochs or out_of_time:
        res = evaluator.evaluate(model, *val).metrics()
        if res['mrr'] > best_mrr:
            best_mrr, best_epoch = res['mrr'], epoch
            best_state = copy.deepcopy(model.state_dict())
        print(f"Epoch: {epoch:03d}, Loss: {loss:.4f}, Minutes: {minutes:.1f}, "
              f"Val MRR: {res['mrr']:.4f}, Val Hits@10: {res['hits@10']:.4f}", flush=True)
    if out_of_time:
        break

model.load_state_dict(best_state)
result = evaluator.evaluate(model, *test)
print(f"Selected epoch {best_epoch} (val MRR {best_mrr:.4f}); "
      f"{(time.perf_counter() - start) / max(epoch, 1):.2f} s per epoch with evaluations")
for rank in ('realistic', 'optimistic'):
    m = result.metrics(rank)
    print(f"Test ({rank} ranks): MRR: {m['mrr']:.4f}, MR: {m['mr']:.1f}, "
          f"Hits@1: {m['hits@1']:.4f}, Hits@3: {m['hits@3']:.4f}, Hits@10: {m['hits@10']:.4f}")
