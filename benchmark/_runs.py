r"""What the benchmark scripts share: train one configured run with
:class:`~torch_mmkg.training.Trainer`, record its test figures (in %), print one line, and
keep ``summary.json`` up to date after every run (a diverged run is a result too)."""
import json
import os
import os.path as osp
import resource
import time
from typing import Any, Dict, Optional

import torch

from torch_mmkg.training import TrainConfig, Trainer, TrainingDivergedError

METRICS = ('mrr', 'hits@1', 'hits@3', 'hits@10')


class Summary(dict):
    r"""The runs of a benchmark by name (plus any other entries a script adds), written to
    ``<out>/summary.json`` with the script's :obj:`settings`; an existing file is extended."""
    def __init__(self, out: str, settings: Dict[str, Any]):
        os.makedirs(out, exist_ok=True)
        self.out, self.path, self.settings = out, osp.join(out, 'summary.json'), settings
        old = json.load(open(self.path)) if osp.exists(self.path) else {}
        #: The settings the file was last written with (:obj:`None` for a new file).
        self.stored_settings: Optional[Dict[str, Any]] = old.get('settings')
        super().__init__({k: v for k, v in old.items() if k != 'settings'})

    def write(self):
        with open(self.path, 'w') as f:
            json.dump({**self, 'settings': self.settings}, f, indent=2)

    def run(self, name: str, model, data, cfg: TrainConfig) -> Optional[dict]:
        r"""Trains and tests :obj:`model` on :obj:`data` (results under ``<out>/<name>``)
        and records the run; returns its entry (:obj:`None` if it diverged)."""
        return self.record(name, train_run(name, model, data, cfg, self.out))

    def record(self, name: str, entry: Dict[str, Any]) -> Optional[dict]:
        r"""Keeps the entry of a finished run (from :func:`train_run`) and writes the file;
        returns it (:obj:`None` if the run diverged)."""
        self[name] = entry
        self.write()
        return None if 'diverged' in entry else entry


def synchronize(device) -> None:
    r"""Waits for the kernels queued on :obj:`device` before a clock is read (nothing to wait
    for on a CPU)."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def max_rss_bytes() -> int:
    r"""The peak resident memory of this process so far (bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def train_run(name: str, model, data, cfg: TrainConfig, out: str) -> Dict[str, Any]:
    r"""Trains and tests :obj:`model` on :obj:`data` (results under ``<out>/<name>``); returns
    the run's entry: test figures in %, epochs, seconds per epoch (median), the peak memory,
    and :obj:`"rss_before_training_bytes"`, the process's peak resident memory before
    training (the data and the model), or :obj:`{"diverged": ...}`."""
    t0 = time.perf_counter()
    before = max_rss_bytes()
    try:
        res = Trainer(model, data, cfg, out_dir=osp.join(out, name)).fit()
    except TrainingDivergedError as e:
        print(f"{name:20s} diverged: {e}", flush=True)
        return {'diverged': str(e), 'minutes': (time.perf_counter() - t0) / 60}
    test = res['test']
    s = {
        **{k: 100 * test['realistic']['both'][k] for k in METRICS},
        **{f'optimistic_{k}': 100 * test['optimistic']['both'][k] for k in METRICS},
        'best_epoch': res['best_epoch'], 'epochs': res['epochs_trained'],
        'best_val_mrr': 100 * res['best_val']['mrr'],
        'seconds_per_epoch': res['seconds_per_epoch_median'],
        'peak_memory': res['peak_memory'], 'rss_before_training_bytes': before,
        'num_parameters': res['num_parameters'], 'minutes': (time.perf_counter() - t0) / 60}
    print(f"{name:20s} MRR {s['mrr']:6.2f}  H@1 {s['hits@1']:6.2f}  H@3 {s['hits@3']:6.2f}  "
          f"H@10 {s['hits@10']:6.2f}  (optimistic MRR {s['optimistic_mrr']:.2f}; "
          f"{s['epochs']} epochs, best {s['best_epoch']}, {s['seconds_per_epoch']:.2f} "
          f"s/epoch, {s['minutes']:.1f} min)", flush=True)
    return s
