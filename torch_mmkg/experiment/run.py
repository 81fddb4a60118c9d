r"""Self-describing runs: train from a config into a run directory, and load a run back.

A run directory holds everything needed to reuse the run without its command line:

.. code-block:: text

    runs/x/
      config.yaml      the resolved config: dataset, root, model, model_args and every
                       training option with its default (the input of train --resume)
      model.json       the model class and every constructor argument, defaults included
      data.json        the dataset and a fingerprint of the graph (triples, splits, features)
      history.jsonl    one line per epoch, written as it happens (loss, time, validation)
      metrics.csv      the same as a table
      log.txt          the log
      checkpoint.pt    the resumable state, every epoch by default
      best_model.pt    the selected model, written whenever validation improves
      results.json     validation and test results with breakdowns, at the end

.. code-block:: python

    from torch_mmkg import load_run

    run = load_run('runs/x')
    run.evaluate('test')                               # the run's test metrics, exactly
    run.predict(head='Paris', relation='capital_of')   # named top-10 tails
"""
import contextlib
import copy
import functools
import json
import logging
import os
import os.path as osp
import signal
import threading
from typing import Any, Dict, Iterator, List, Optional

import torch

from torch_mmkg.experiment.config import (RUN_IDENTITY, check_sections, load_config_file,
                                          save_config, saved_config_path)
from torch_mmkg.experiment.data import (build_data, data_fingerprint, dataset_name,
                                        fingerprint_mismatch, resolve_data_config)
from torch_mmkg.experiment.model import build_model, model_arguments
from torch_mmkg.home import default_root

__all__ = ['train', 'resolve', 'load_run', 'Run', 'stop_on_signals']

logger = logging.getLogger('torch_mmkg')


def resolve(cfg: Dict[str, Any]) -> Dict[str, Any]:
    r"""A config with canonical names and every training option filled in: the model's
    registered name, the dataset's registered spelling, the transforms as applied, and
    :obj:`train` as the full :class:`~torch_mmkg.training.TrainConfig` (defaults included).

    Raises:
        ValueError: for an unknown section, dataset, model, training option or transform,
            naming it.
    """
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig
    check_sections(cfg, 'config')
    out = copy.deepcopy(cfg)
    out.pop('search', None)  # a tuning search space is no part of a run
    out['dataset'] = dataset_name(out.get('dataset'))
    out['model'] = MODELS.canonical(out.get('model'))
    out['dataset_args'] = dict(out.get('dataset_args') or {})
    out['model_args'] = dict(out.get('model_args') or {})
    out['train'] = TrainConfig.from_dict(dict(out.get('train') or {})).to_dict()
    out = resolve_data_config(out)  # transforms and entity texts, canonical
    if out.get('entity_texts', {}).get('path'):  # a run may be loaded from elsewhere
        out['entity_texts']['path'] = osp.abspath(out['entity_texts']['path'])
    for key in ('transforms', 'entity_texts', 'trackers', 'root'):
        if not out.get(key):
            out.pop(key, None)
    return out


def _check_run_directory(cfg: Dict[str, Any], out: Optional[str], resume: bool):
    if not resume:
        if out and osp.exists(osp.join(out, 'checkpoint.pt')):
            raise ValueError(f"{out} holds the checkpoint of an earlier run; pass --resume to "
                             f"continue it, or choose another --out")
        return
    if not out:
        raise ValueError("--resume needs the directory of the run to continue (--out)")
    path = saved_config_path(out)
    if path is None:
        raise FileNotFoundError(f"{out}: no config.yaml of an earlier run to resume")
    saved = load_config_file(path)
    changed = [f"{key}: {saved.get(key)!r} in {path}, {cfg.get(key)!r} now"
               for key in RUN_IDENTITY if (saved.get(key) or None) != (cfg.get(key) or None)]
    if changed:
        raise ValueError(f"cannot resume {out} with another dataset or model ("
                         f"{'; '.join(changed)}); start a new run with another --out")


@contextlib.contextmanager
def stop_on_signals(trainer, signals=(signal.SIGTERM, )) -> Iterator[None]:
    r"""Within the block, the given signals (SIGTERM by default) ask :obj:`trainer` to stop
    (:meth:`~torch_mmkg.training.Trainer.request_stop`) instead of killing the process, so
    that the run ends between two batches with its history and last checkpoint intact
    (:class:`~torch_mmkg.training.TrainingInterrupted`). Outside the main thread, where
    Python cannot install handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        logger.warning(f"received signal {signum}: stopping before the next batch")
        trainer.request_stop()

    for s in signals:
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _write_json(obj: Any, path: str):
    from torch_mmkg.data.serialization import atomic_write
    with atomic_write(path, encoding='utf-8') as f:
        json.dump(obj, f, indent=2)


@contextlib.contextmanager
def _log_to(path: Optional[str]) -> Iterator[None]:
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding='utf-8')
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    lg = logging.getLogger('torch_mmkg')
    level = lg.level
    if lg.getEffectiveLevel() > logging.INFO:
        lg.setLevel(logging.INFO)
    lg.addHandler(handler)
    try:
        yield
    finally:
        lg.removeHandler(handler)
        lg.setLevel(level)
        handler.close()


def train(cfg: Optional[Dict[str, Any]] = None, root: Optional[str] = None,
          out: Optional[str] = None, resume: bool = False,
          callbacks: Optional[List[Any]] = None) -> Dict[str, Any]:
    r"""Builds the dataset, model and trainer of a config and trains, into the run directory
    :obj:`out` if given.

    Args:
        cfg (dict, optional): The config (sections :obj:`dataset`, :obj:`dataset_args`,
            :obj:`model`, :obj:`model_args`, :obj:`train`, and optionally :obj:`root`,
            :obj:`transforms`, :obj:`entity_texts`, :obj:`trackers`). With :obj:`resume` and
            no :obj:`cfg`, the run directory's own config. (default: :obj:`None`)
        root (str, optional): Where registered datasets are processed (default: the config's
            :obj:`root`, else :func:`default_root`).
        out (str, optional): The run directory. (default: :obj:`None`: nothing is written)
        resume (bool, optional): Continue the run in :obj:`out` from its checkpoint; only the
            options of :data:`~torch_mmkg.training.config.RESUMABLE_CHANGES` may differ from
            the saved config. (default: :obj:`False`)
        callbacks (List[Callback], optional): Extra trainer callbacks (e.g. a pruner).
            (default: :obj:`None`)

    Returns:
        dict: The trainer's results.

    Raises:
        ValueError: for a bad config (naming the key), a run directory that holds another
            run's checkpoint (without :obj:`resume`), or a resumed run whose dataset, model or
            training options differ from the interrupted one.
        TrainingInterrupted: when SIGTERM stopped the run (resume it with :obj:`resume`).
    """
    from torch_mmkg.training import (CSVTracker, JSONTracker, Trainer, TrainConfig,
                                     build_tracker, seed_everything)
    from torch_mmkg.training import distributed as D
    if cfg is None:
        if not (resume and out):
            raise ValueError("train() needs a config, or resume=True and the run directory")
        path = saved_config_path(out)
        if path is None:
            raise FileNotFoundError(f"{out}: no config.yaml of an earlier run to resume")
        cfg = load_config_file(path)
    cfg = resolve(cfg)
    root = osp.abspath(root or cfg.get('root') or default_root())
    if cfg['dataset'] not in _registered_names():
        cfg['dataset'] = osp.abspath(cfg['dataset'])
    _check_run_directory(cfg, out, resume)
    train_cfg = TrainConfig.from_dict(cfg['train'])
    started = D.world_size() == 1 and D.init_from_env(train_cfg.device)
    main = D.is_main()  # under torchrun: only rank 0 writes the run directory
    seed_everything(train_cfg.seed)
    # rank 0 processes the dataset (and encodes the entity texts) before the others read it
    dataset, data = D.main_first(lambda: build_data(cfg, root), 'loading the dataset')
    model = build_model(cfg, data, dataset)
    extra = list(callbacks or ())
    if out and main:
        os.makedirs(out, exist_ok=True)
        extra = [JSONTracker(osp.join(out, 'history.jsonl')),
                 CSVTracker(osp.join(out, 'metrics.csv'))] + [
            build_tracker(name, out) for name in cfg.get('trackers', ())] + extra
    trainer = Trainer(model, data, train_cfg, out_dir=out, callbacks=extra)
    if out and main:
        cfg['train'] = trainer.config.to_dict()  # resolved by the trainer (checkpoints, ...)
        if cfg['dataset'] in _registered_names():
            cfg['root'] = root
        save_config(cfg, osp.join(out, 'config.yaml'))
        _write_json(model_arguments(cfg), osp.join(out, 'model.json'))
        _write_json({'dataset': cfg['dataset'], 'dataset_class': type(dataset).__name__,
                     'fingerprint': data_fingerprint(data)}, osp.join(out, 'data.json'))
    try:
        with _log_to(osp.join(out, 'log.txt') if out and main else None), \
                stop_on_signals(trainer):
            return trainer.fit(resume=resume)
    finally:
        if started:  # the process group this call created ends with it
            D.shutdown()


def _registered_names() -> List[str]:
    from torch_mmkg.datasets import DATASETS
    return list(DATASETS)


class Run:
    r"""A trained run loaded back by :func:`load_run`: the model (the selected one, in
    evaluation mode) and the graph, ready to score.

    Attributes:
        directory (str): The run directory.
        config (dict): Its resolved config.
        model (KGEModel): The selected model.
        data (HeteroData): The graph it was trained on.
        dataset: The dataset object.
        results (dict or None): :obj:`results.json` if the run finished.
    """
    def __init__(self, directory: str, config: Dict[str, Any], model, data, dataset,
                 results: Optional[Dict[str, Any]]):
        self.directory = directory
        self.config = config
        self.model = model
        self.data = data
        self.dataset = dataset
        self.results = results

    def __repr__(self) -> str:
        return (f"Run({self.directory!r}, model={self.config['model']}, "
                f"dataset={self.config['dataset']})")

    @property
    def train_config(self):
        from torch_mmkg.training import TrainConfig
        return TrainConfig.from_dict(self.config['train'])

    def evaluate(self, split: str = 'test', batch_size: Optional[int] = None,
                 exclude_query_entity: Optional[bool] = None,
                 progress: bool = False) -> Dict[str, Any]:
        r"""The filtered ranking metrics of :obj:`split` (:obj:`"test"`, :obj:`"val"`,
        :obj:`"val_clean"`, :obj:`"train"`) with their breakdowns (per side, relation
        category and entity completeness), as the run's :obj:`results.json` holds them; with
        the run's evaluation options, the test split gives the run's test metrics exactly.

        Args:
            split (str, optional): The split. (default: :obj:`"test"`)
            batch_size (int, optional): Queries per batch (default: the run's).
            exclude_query_entity (bool, optional): (default: the run's)
            progress (bool, optional): A progress bar. (default: :obj:`False`)
        """
        from torch_mmkg.data.mmkg import get_triples, split_key, REL
        from torch_mmkg.data.split import clean_val_mask
        from torch_mmkg.evaluation import RankingEvaluator
        cfg = self.train_config
        data = self.data
        if split not in ('train', 'val', 'val_clean', 'test'):
            raise ValueError(f"split must be 'train', 'val', 'val_clean' or 'test', got "
                             f"{split!r}")
        if split == 'val_clean' and split_key('val_clean') not in data[REL]:
            data = copy.copy(data)
            data[REL][split_key('val_clean')] = clean_val_mask(data)
        device = next(self.model.parameters()).device
        known, categories, complete = self._ranking_context
        evaluator = RankingEvaluator(
            known.to(device), batch_size if batch_size is not None else cfg.eval_batch_size,
            progress=progress,
            exclude_query_entity=(cfg.exclude_query_entity if exclude_query_entity is None
                                  else exclude_query_entity))
        triples = get_triples(data, split)
        if triples[0].numel() == 0:
            raise ValueError(f"the split {split!r} of {self.config['dataset']} is empty")
        res = evaluator.evaluate(self.model, *triples)
        return res.to_dict(categories, complete)

    @functools.cached_property
    def _ranking_context(self):
        r"""The filter (every known triple), the relation categories and the entity
        completeness of the graph: the same for every split, built once."""
        from torch_mmkg.data.known_triples import KnownTriples
        from torch_mmkg.data.mmkg import get_triples
        from torch_mmkg.evaluation import entity_completeness, relation_categories
        return (KnownTriples.from_data(self.data, 'all'),
                relation_categories(*get_triples(self.data, 'all'), self.data.num_relations),
                entity_completeness(self.data))

    def predict(self, head=None, relation=None, tail=None, k: int = 10,
                filtered: bool = False):
        r"""The top :obj:`k` completions of :math:`(h, r, ?)` or :math:`(?, r, t)` by name or
        id (see :func:`~torch_mmkg.experiment.predict_target`)."""
        from torch_mmkg.experiment.predict import predict_target
        return predict_target(self.model, self.data, head=head, relation=relation, tail=tail,
                              k=k, filtered=filtered)


def load_run(directory: str, device: Optional[str] = None, root: Optional[str] = None,
             check_data: bool = True) -> Run:
    r"""Loads the run in :obj:`directory` (written by :func:`train` or
    :obj:`torch-mmkg train --out`): rebuilds its graph from the saved config, checks it is the
    graph the run was trained on, builds the model with its saved constructor arguments and
    loads the selected weights (:obj:`best_model.pt`, read without running code).

    Args:
        directory (str): The run directory.
        device (str, optional): Where the model goes (default: :obj:`"cpu"`).
        root (str, optional): Where registered datasets live, if not where the run had them.
            (default: :obj:`None`)
        check_data (bool, optional): Refuse a graph whose fingerprint differs from the run's.
            (default: :obj:`True`)

    Raises:
        FileNotFoundError: if the directory holds no config or no best model.
        ValueError: if the graph differs from the run's (naming what differs), or the weights
            do not fit the model.
    """
    from torch_mmkg.data.serialization import safe_load
    if not osp.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such run directory")
    path = saved_config_path(directory)
    if path is None:
        raise FileNotFoundError(f"{directory}: no config.yaml; not a torch_mmkg run directory")
    cfg = load_config_file(path)
    weights = osp.join(directory, 'best_model.pt')
    if not osp.isfile(weights):
        raise FileNotFoundError(f"{directory}: no best_model.pt (the run has not validated "
                                f"yet)")
    dataset, data = build_data(cfg, root or cfg.get('root') or default_root())
    info_path = osp.join(directory, 'data.json')
    if check_data and osp.isfile(info_path):
        with open(info_path, encoding='utf-8') as f:
            saved = json.load(f).get('fingerprint') or {}
        diff = fingerprint_mismatch(saved, data_fingerprint(data))
        if diff:
            raise ValueError(f"{directory}: the graph built from its config is not the one it "
                             f"was trained on ({diff}); pass check_data=False to load anyway")
    model = build_model(cfg, data, dataset)
    state = safe_load(weights, 'model weights', map_location='cpu')
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{weights}: the weights do not fit the model of the config: {e}"
                         ) from None
    model = model.to(torch.device(device or 'cpu')).eval()
    results = None
    if osp.isfile(osp.join(directory, 'results.json')):
        with open(osp.join(directory, 'results.json'), encoding='utf-8') as f:
            results = json.load(f)
    return Run(directory, cfg, model, data, dataset, results)
