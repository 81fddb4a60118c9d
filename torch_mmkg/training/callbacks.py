r"""Hooks into :class:`~torch_mmkg.training.Trainer`: callbacks and the experiment trackers
built on them.

A :class:`Callback` sees the trainer at the start of :meth:`~torch_mmkg.training.Trainer.fit`,
after every epoch, after every validation, after every checkpoint and at the end. An
exception raised in a hook stops training and propagates out of :meth:`fit` (an Optuna
pruner raises :obj:`optuna.TrialPruned` from :meth:`Callback.on_validation_end`).

.. code-block:: python

    from torch_mmkg.training import Trainer, CSVTracker, JSONTracker

    trainer = Trainer(model, data, config, out_dir='runs/x',
                      callbacks=[CSVTracker('runs/x/metrics.csv')])
    trainer.fit()

The trackers write what has happened so far after every epoch (a killed run keeps its
history); on resume they rewrite their file from the restored history, so that epochs trained
after the last checkpoint, and lost with the interruption, do not appear twice.
:class:`TensorBoardTracker`, :class:`WandbTracker` and :class:`MLflowTracker` need their
optional packages (:obj:`pip install torch_mmkg[track]`), imported when they are built.
"""
import csv
import json
import logging
import math
import os
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional

from torch_mmkg.data.serialization import atomic_write

__all__ = ['Callback', 'CallbackList', 'JSONTracker', 'CSVTracker', 'TensorBoardTracker',
           'WandbTracker', 'MLflowTracker', 'TRACKERS', 'build_tracker']

logger = logging.getLogger('torch_mmkg')

#: The validation metrics a record may hold, in the order trackers write them.
VAL_METRICS = ('mrr', 'mr', 'hits@1', 'hits@3', 'hits@10')


class Callback:
    r"""The base class of trainer hooks; every method does nothing unless overridden.

    The :obj:`record` of an epoch is the entry the trainer appends to its history:
    :obj:`epoch`, :obj:`loss` (the mean batch loss), :obj:`seconds`,
    :obj:`elapsed_train_seconds` and, on validation epochs, :obj:`val` (the realistic,
    both-sided metrics of the validation split: :obj:`mrr`, :obj:`mr`, :obj:`hits@k`,
    :obj:`count`) and :obj:`val_seconds`.
    """
    def on_fit_start(self, trainer):
        r"""Called once :meth:`fit` has built (or, resuming, restored) its state."""

    def on_epoch_end(self, trainer, record: Dict[str, Any]):
        r"""Called after every epoch (after validation, before the checkpoint)."""

    def on_validation_end(self, trainer, epoch: int, metrics: Dict[str, float]):
        r"""Called after every validation with its realistic, both-sided metrics."""

    def on_checkpoint(self, trainer, path: str):
        r"""Called after a checkpoint has been written to :obj:`path`."""

    def on_fit_end(self, trainer, results: Dict[str, Any]):
        r"""Called with the results once the selected model has been tested."""


class CallbackList(Callback):
    r"""Calls a sequence of callbacks in order.

    Args:
        callbacks (Iterable[Callback], optional): The callbacks. (default: :obj:`None`)

    Raises:
        TypeError: naming the position of an entry that is not a :class:`Callback`.
    """
    def __init__(self, callbacks: Optional[Iterable[Callback]] = None):
        self.callbacks: List[Callback] = list(callbacks or ())
        for i, c in enumerate(self.callbacks):
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks[{i}] must be a torch_mmkg.training.Callback, got "
                                f"{type(c).__name__}")

    def on_fit_start(self, trainer):
        for c in self.callbacks:
            c.on_fit_start(trainer)

    def on_epoch_end(self, trainer, record):
        for c in self.callbacks:
            c.on_epoch_end(trainer, record)

    def on_validation_end(self, trainer, epoch, metrics):
        for c in self.callbacks:
            c.on_validation_end(trainer, epoch, metrics)

    def on_checkpoint(self, trainer, path):
        for c in self.callbacks:
            c.on_checkpoint(trainer, path)

    def on_fit_end(self, trainer, results):
        for c in self.callbacks:
            c.on_fit_end(trainer, results)


def _plain(value: Any) -> Any:
    r"""JSON-ready: non-finite floats as strings would break readers, so they become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _FileTracker(Callback):
    def __init__(self, path: str):
        if not isinstance(path, str) or not path:
            raise ValueError(f"{type(self).__name__}: path must be a file name, got {path!r}")
        self.path = path

    def _rewrite(self, history: List[Dict[str, Any]]):
        directory = osp.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with atomic_write(self.path, newline='', encoding='utf-8') as f:
            self._write_header(f)
            for record in history:
                self._write(f, record)

    def on_fit_start(self, trainer):
        self._rewrite(trainer.state['history'])

    def on_epoch_end(self, trainer, record):
        with open(self.path, 'a', newline='', encoding='utf-8') as f:
            self._write(f, record)

    def _write_header(self, f):
        pass

    def _write(self, f, record):  # pragma: no cover - abstract
        raise NotImplementedError


class JSONTracker(_FileTracker):
    r"""Writes every epoch's record as one line of JSON (JSON Lines), as it happens.

    Args:
        path (str): The file, e.g. :obj:`"runs/x/history.jsonl"`.
    """
    def _write(self, f, record):
        f.write(json.dumps(_plain(record)) + '\n')


class CSVTracker(_FileTracker):
    r"""Writes one row per epoch: :obj:`epoch`, :obj:`loss`, :obj:`seconds`,
    :obj:`elapsed_train_seconds` and the validation metrics (:obj:`val_mrr`, :obj:`val_mr`,
    :obj:`val_hits@1`, ...; empty on epochs without validation).

    Args:
        path (str): The file, e.g. :obj:`"runs/x/metrics.csv"`.
    """
    columns = ('epoch', 'loss', 'seconds', 'elapsed_train_seconds') + tuple(
        f'val_{m}' for m in VAL_METRICS)

    def _write_header(self, f):
        csv.writer(f).writerow(self.columns)

    def _write(self, f, record):
        val = record.get('val') or {}
        row = [record.get(c) for c in self.columns[:4]] + [val.get(m) for m in VAL_METRICS]
        csv.writer(f).writerow(['' if v is None else v for v in row])


class _ScalarTracker(Callback):
    r"""A tracker that receives scalars by name and step (TensorBoard, W&B, MLflow)."""
    def on_epoch_end(self, trainer, record):
        scalars = {'train/loss': record['loss'], 'train/seconds': record['seconds']}
        for m in VAL_METRICS:
            if record.get('val') and m in record['val']:
                scalars[f'val/{m}'] = record['val'][m]
        self.log(scalars, record['epoch'])

    def on_fit_end(self, trainer, results):
        test = (results.get('test') or {}).get('realistic', {}).get('both', {})
        self.log({f'test/{m}': test[m] for m in VAL_METRICS if m in test},
                 results.get('epochs_trained', 0))
        self.close()

    def log(self, scalars: Dict[str, float], step: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self):
        pass


def _require(module: str, extra: str, cls: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{cls} needs the package {module.split('.')[0]!r} "
                          f"(pip install {extra})") from e


class TensorBoardTracker(_ScalarTracker):
    r"""Logs the losses and metrics to TensorBoard
    (:class:`torch.utils.tensorboard.SummaryWriter`, which needs :obj:`tensorboard`).

    Args:
        log_dir (str): The event directory, e.g. :obj:`"runs/x/tensorboard"`.
    """
    def __init__(self, log_dir: str):
        _require('tensorboard', 'tensorboard', 'TensorBoardTracker')
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir)

    def log(self, scalars, step):
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandbTracker(_ScalarTracker):
    r"""Logs the losses, metrics and the training config to Weights & Biases.

    Args:
        **kwargs: Passed to :obj:`wandb.init` (:obj:`project`, :obj:`name`, :obj:`mode`...).
    """
    def __init__(self, **kwargs):
        self.wandb = _require('wandb', 'wandb', 'WandbTracker')
        self.kwargs = kwargs
        self.run = None

    def on_fit_start(self, trainer):
        self.run = self.wandb.init(config=trainer.config.to_dict(), **self.kwargs)

    def log(self, scalars, step):
        self.run.log(scalars, step=step)

    def close(self):
        self.run.finish()


class MLflowTracker(_ScalarTracker):
    r"""Logs the losses, metrics and the training config to MLflow.

    Args:
        experiment (str, optional): The experiment name. (default: :obj:`None`: MLflow's)
        tracking_uri (str, optional): Where MLflow stores runs. (default: :obj:`None`)
    """
    def __init__(self, experiment: Optional[str] = None, tracking_uri: Optional[str] = None):
        self.mlflow = _require('mlflow', 'mlflow', 'MLflowTracker')
        if tracking_uri:
            self.mlflow.set_tracking_uri(tracking_uri)
        if experiment:
            self.mlflow.set_experiment(experiment)

    def on_fit_start(self, trainer):
        self.mlflow.start_run()
        self.mlflow.log_params({k: v for k, v in trainer.config.to_dict().items()
                                if v is not None})

    def log(self, scalars, step):
        self.mlflow.log_metrics({k.replace('@', '_at_'): v for k, v in scalars.items()},
                                step=step)

    def close(self):
        self.mlflow.end_run()


#: The trackers a config can name (:obj:`trackers: [csv, tensorboard]`), built for a run
#: directory by :func:`build_tracker`.
TRACKERS = {
    'csv': lambda out: CSVTracker(osp.join(out, 'metrics.csv')),
    'json': lambda out: JSONTracker(osp.join(out, 'history.jsonl')),
    'tensorboard': lambda out: TensorBoardTracker(osp.join(out, 'tensorboard')),
    'wandb': lambda out: WandbTracker(dir=out),
    'mlflow': lambda out: MLflowTracker(),
}


def build_tracker(name: str, out: str) -> Callback:
    r"""The tracker :obj:`name` (:data:`TRACKERS`: :obj:`"csv"`, :obj:`"json"`,
    :obj:`"tensorboard"`, :obj:`"wandb"`, :obj:`"mlflow"`; any case) writing into the run
    directory :obj:`out`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    key = str(name).strip().lower()
    if key not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; choose from {sorted(TRACKERS)}")
    return TRACKERS[key](out)
