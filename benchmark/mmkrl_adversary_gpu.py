r"""MMKRL with and without its adversarial training (MMKRLAdversary) on MKG-W at the settings
of examples/configs/mmkrl_{,adv_}mkgw.yaml (d 250, batch 1024, 32 filtered Bernoulli negatives,
margin 6, Adam 1e-3), on a GPU (``--device``, CUDA by default): the seconds per epoch of both
side by side in one process (medians of epochs 6-30), or one training run (selection on
val_clean every 50 epochs, one test evaluation).

    python benchmark/graphs.py --datasets MKG-W --out .devdata
    python benchmark/mmkrl_adversary_gpu.py ratio --graph .devdata/MKG-W.pt --out runs/mmkrl
    python benchmark/mmkrl_adversary_gpu.py adv 0 400 4.5 --graph ... --out ...  # or plain

benchmark/results/mmkrl_adversary_h100.md holds what it measured (paper_configs.py has the
same runs with a TransE backbone: mmkrl_mkgw, mmkrl_adv_mkgw, transe_mkgw_mmkrl)."""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from graphs import load_graph  # noqa: E402
from torch_mmkg.nn import MMKRL  # noqa: E402
from torch_mmkg.training import TrainConfig, Trainer, seed_everything  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument('mode', choices=['ratio', 'plain', 'adv'])
parser.add_argument('seed', type=int, nargs='?', default=0)
parser.add_argument('epochs', type=int, nargs='?', default=400)
parser.add_argument('minutes', type=float, nargs='?', default=4.5)
parser.add_argument('--graph', required=True)
parser.add_argument('--out', required=True)
parser.add_argument('--device', default='cuda')
args = parser.parse_args()
OUT = args.out
data = load_graph(args.graph)
ADV = dict(adversarial_weight=0.07, synthetic_pairing='batch', noise_channels=64,
           hidden_channels=512, generator_lr=1e-3)


def make(adv, seed, **kw):
    seed_everything(seed)
    model = MMKRL.from_data(data, 250, margin=6.0, alignment_weight=1.0,
                            trainable_features=True)
    cfg = TrainConfig(batch_size=1024, lr=1e-3, optimizer='adam', num_negatives=32,
                      sampling='bernoulli', corrupt_side_per='negative',
                      filter_negatives=True, sample_with_replacement=True, seed=seed,
                      progress=False, device=args.device,
                      mmkrl_adversary=ADV if adv else None, **kw)
    return Trainer(model, data, cfg)


os.makedirs(OUT, exist_ok=True)
mode = args.mode


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


if mode == 'ratio':
    ts = {False: make(False, 0, epochs=30), True: make(True, 0, epochs=30)}
    times = {False: [], True: []}
    for e in range(1, 31):
        for adv in (False, True):
            sync()
            t = time.perf_counter()
            ts[adv].train_epoch(e)
            sync()
            times[adv].append(time.perf_counter() - t)
    med = {k: statistics.median(v[5:]) for k, v in times.items()}
    out = {'plain_s_per_epoch': med[False], 'adv_s_per_epoch': med[True],
           'ratio': med[True] / med[False],
           'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}
    print(json.dumps(out))
    json.dump(out, open(f'{OUT}/ratio.json', 'w'))
else:
    adv, seed = mode == 'adv', args.seed
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    res = make(adv, seed, epochs=args.epochs, eval_every=50, max_minutes=args.minutes).fit()
    keep = {k: res[k] for k in ('stop_reason', 'epochs_trained', 'best_epoch', 'best_val',
                                'seconds_per_epoch_median', 'train_seconds', 'peak_memory')}
    keep['test'] = {k: res['test'][k] for k in ('realistic', 'optimistic') if k in res['test']}
    keep['val_curve'] = [(h['epoch'], h['val']['mrr']) for h in res['history'] if 'val' in h]
    brief = {k: keep[k] for k in ('epochs_trained', 'best_epoch', 'stop_reason')}
    print(mode, seed, json.dumps(brief), json.dumps(keep['test'].get('realistic', {}))[:300])
    json.dump(keep, open(f'{OUT}/{mode}_seed{seed}.json', 'w'), default=float)
