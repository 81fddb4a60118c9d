r"""The cost of MMKRL's adversarial training: the seconds per epoch of MMKRL with and without
:class:`~torch_mmkg.training.MMKRLAdversary`, side by side in one process (alternating epochs,
medians of epochs 6-30), at the settings of ``examples/configs/mmkrl_{,adv_}mkgw.yaml`` (the
runs ``mmkrl_mkgw`` and ``mmkrl_adv_mkgw`` of :mod:`paper_configs`).

    python benchmark/graphs.py --datasets MKG-W --out .devdata
    python benchmark/mmkrl_adversary_gpu.py --graphs .devdata --out runs/mmkrl

The scores of both (and of their TransE backbone) come from
``python benchmark/paper_configs.py --runs mmkrl_mkgw mmkrl_adv_mkgw transe_mkgw_mmkrl``;
``benchmark/results/mmkrl_adversary_h100.md`` holds what was measured."""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from _runs import synchronize  # noqa: E402
from graphs import load_graph  # noqa: E402
from paper_configs import resolve  # noqa: E402

from torch_mmkg.cli import build_model  # noqa: E402
from torch_mmkg.training import TrainConfig, Trainer, seed_everything  # noqa: E402

RUNS = {False: 'mmkrl_mkgw', True: 'mmkrl_adv_mkgw'}


def trainer(cfg: dict, data, device: str, epochs: int) -> Trainer:
    train = TrainConfig.from_dict(dict(cfg['train'], epochs=epochs, checkpoint_every=0,
                                       progress=False, device=device))
    seed_everything(train.seed)
    return Trainer(build_model(cfg, data), data, train)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--graphs', default='.devdata')
    parser.add_argument('--out', required=True)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    args = parser.parse_args()
    cfgs = {adv: resolve(name) for adv, name in RUNS.items()}
    graphs = {name: load_graph(osp.join(args.graphs, f'{name}.pt'))  # each graph once
              for name in {cfg['dataset'] for cfg in cfgs.values()}}
    trainers = {adv: trainer(cfg, graphs[cfg['dataset']], args.device, args.epochs)
                for adv, cfg in cfgs.items()}
    times = {adv: [] for adv in RUNS}
    for epoch in range(1, args.epochs + 1):
        for adv, tr in trainers.items():
            synchronize(args.device)
            start = time.perf_counter()
            tr.train_epoch(epoch)
            synchronize(args.device)
            times[adv].append(time.perf_counter() - start)
    med = {adv: statistics.median(t[args.warmup:]) for adv, t in times.items()}
    out = {'plain_s_per_epoch': med[False], 'adv_s_per_epoch': med[True],
           'ratio': med[True] / med[False],
           'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}
    print(json.dumps(out))
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'ratio.json'), 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main()
