import copy
import dataclasses
import json
import logging
import math
import os
import os.path as osp
import random
import resource
import statistics
import time
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.data.mmkg import ENTITY, REL, get_triples, split_key
from torch_mmkg.data.serialization import (UnsafeFileError, atomic_torch_save, numpy_globals,
                                           safe_load)
from torch_mmkg.data.split import clean_val_mask
from torch_mmkg.evaluation import (RankingEvaluator, entity_completeness,
                                   relation_categories)
from torch_mmkg.nn.kge.base import FeatureMismatchWarning, feature_mismatch
from torch_mmkg.nn.loss import LOSSES, BCELoss
from torch_mmkg.nn.regimes import REGIMES, NegativeSampling, OneToN
from . import distributed as D
from .callbacks import Callback, CallbackList
from .config import ADVERSARIES, RESUMABLE_CHANGES, TrainConfig

logger = logging.getLogger('torch_mmkg')

#: Marks a checkpoint written by :meth:`Trainer.save_checkpoint`.
CHECKPOINT_FORMAT = 'torch_mmkg.checkpoint/1'
_CHECKPOINT_KEYS = ('model', 'optimizer', 'best_state', 'state', 'rng', 'config')


def resolve_device(device: str = 'auto') -> torch.device:
    r"""CUDA when available for :obj:`"auto"`, else the named device."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or another "
                         f"torch device, got {device!r} ({e})") from None
    if out.type == 'cuda':
        if not torch.cuda.is_available():
            why = 'built without CUDA' if torch.version.cuda is None else 'no GPU visible'
            raise ValueError(f"device {device!r}: CUDA is not available here (torch "
                             f"{torch.__version__}, {why}); use device 'cpu' or 'auto'")
        if out.index is not None and out.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA "
                             f"devices are visible")
    return out


def seed_everything(seed: int):
    r"""Seeds Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _peak_memory(device: torch.device) -> Dict[str, Optional[int]]:
    out = {'cpu_max_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.type == 'cuda':
        out['cuda_max_allocated_bytes'] = torch.cuda.max_memory_allocated(device)
    return out


class TrainingDivergedError(FloatingPointError):
    r"""Raised when training diverges: a loss far above where it started (see
    :obj:`TrainConfig.divergence_factor`), a NaN/Inf loss (:class:`NonFiniteLossError`) or a
    non-finite validation metric."""


class NonFiniteLossError(TrainingDivergedError):
    r"""Raised when a training loss becomes NaN or infinite."""


class TrainingInterrupted(Exception):
    r"""Raised by :meth:`Trainer.fit` when :meth:`Trainer.request_stop` was called (e.g. by a
    SIGTERM handler): the epoch in progress is abandoned, and the run continues from its last
    checkpoint (:obj:`epoch`, or none if :obj:`None`) with :obj:`fit(resume=True)`."""
    def __init__(self, message: str, epoch: int, checkpoint: Optional[str]):
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint = checkpoint


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def model_signature(model: torch.nn.Module) -> Dict[str, Any]:
    r"""The class and the scalar hyper-parameters (public :obj:`bool`/:obj:`int`/
    :obj:`float`/:obj:`str` attributes of the model and its submodules, e.g. a margin or a
    temperature) of :obj:`model`: what its state dict does not record but a resumed run must
    share. Taken when a :class:`Trainer` is built, before training."""
    out: Dict[str, Any] = {'class': f'{type(model).__module__}.{type(model).__qualname__}'}
    for name, module in model.named_modules():
        for key, value in vars(module).items():
            if key.startswith('_') or key == 'training':
                continue
            if isinstance(value, (bool, int, float, str)):
                out[f'{name}.{key}' if name else key] = value
    return out


class Trainer:
    r"""Trains a :class:`~torch_mmkg.nn.KGEModel` on a :mod:`torch_mmkg` graph and
    evaluates it under the filtered, both-sided protocol.

    * a training regime outside the model (:mod:`torch_mmkg.nn.regimes`): negative sampling
      (:math:`K` negatives per positive, uniform or Bernoulli, the side drawn per positive or
      per negative, optionally filtered, optionally twins, positives permuted or drawn with
      replacement) or 1-N scoring, with the model's loss or :obj:`loss`, for every model; the
      default :obj:`regime` and negative filtering are the model's
      (:attr:`~torch_mmkg.nn.KGEModel.default_regime`,
      :attr:`~torch_mmkg.nn.KGEModel.default_filter_negatives`);
    * a regime with options and trainable parts of its own (KBGAN's generator, MMRNS's
      attention; :obj:`regime_args`) is built for the model and the graph
      (:meth:`~torch_mmkg.nn.regimes.TrainingRegime.bind`); its parameter groups join the
      optimiser and its state the checkpoints;
    * validation every :obj:`eval_every` epochs on the cleaned validation split; the best
      model by validation MRR is kept (the test split never selects anything), with optional
      early stopping (:obj:`patience`) and a wall-clock budget (:obj:`max_minutes`);
    * checkpoints every :obj:`checkpoint_every` epochs (every epoch by default when there is
      an :obj:`out_dir`) holding the model, optimiser, best model, history and every random
      state, so that :meth:`fit` with :obj:`resume=True` continues exactly as if never
      interrupted (bit-identical on CPU); the best model is written to
      :obj:`out_dir/best_model.pt` whenever it improves;
    * callbacks (:class:`~torch_mmkg.training.Callback`: trackers, pruners) called at the
      start, after every epoch, validation and checkpoint, and at the end; validation lines
      go to the :obj:`"torch_mmkg"` logger (:mod:`logging`);
    * :meth:`request_stop` (a signal handler's way out) abandons the epoch in progress and
      raises :class:`TrainingInterrupted`;
    * parameters a model trains by their own objective
      (:meth:`~torch_mmkg.nn.KGEModel.auxiliary_parameters`, e.g. MoMoK's CLUB estimators)
      get their own Adam optimiser and a step on
      :meth:`~torch_mmkg.nn.KGEModel.auxiliary_loss` after every main step;
    * a NaN/Inf loss stops training with :class:`NonFiniteLossError` naming the epoch and
      batch;
    * the results (config, history, validation and test metrics with per-side, per-category
      and per-completeness breakdowns, timings, peak memory) are returned and written to
      :obj:`out_dir/results.json`.

    Args:
        model (KGEModel): The model (moved to the configured device).
        data (HeteroData): The graph, with train/val/test masks.
        config (TrainConfig, optional): The options. (default: :obj:`TrainConfig()`)
        out_dir (str, optional): Where checkpoints, the best model and results go.
            (default: :obj:`None`: nothing is written)
        callbacks (List[Callback], optional): Hooks called during :meth:`fit`.
            (default: :obj:`None`)
    """
    def __init__(self, model, data: HeteroData, config: Optional[TrainConfig] = None,
                 out_dir: Optional[str] = None, callbacks: Optional[List[Callback]] = None):
        self.config = config or TrainConfig()
        if self.config.filter_negatives is None:  # the model's default, stored resolved
            self.config = dataclasses.replace(self.config, filter_negatives=bool(
                getattr(model, 'default_filter_negatives', False)))
        if self.config.checkpoint_every is None:  # every epoch when there is a run directory
            self.config = dataclasses.replace(self.config,
                                              checkpoint_every=1 if out_dir else 0)
        self._stop_requested = False
        cfg = self.config
        # Under torchrun: one process per rank, each training on its shard of every batch.
        D.init_from_env(cfg.device)
        self.world, self.rank = D.world_size(), D.rank()
        self.is_main = self.rank == 0
        self.callbacks = CallbackList(callbacks if self.is_main else None)
        self.device = resolve_device(cfg.device)
        if (cfg.precision == 'bf16' and self.device.type == 'cuda'
                and not torch.cuda.is_bf16_supported()):
            raise ValueError(f"precision='bf16' needs a device with bfloat16 support; "
                             f"{torch.cuda.get_device_name(self.device)} has none: use 'fp32'")
        self.model = model.to(self.device)
        self.data = data
        self.out_dir = out_dir
        if cfg.checkpoint_every and not out_dir:
            raise ValueError(f"checkpoint_every={cfg.checkpoint_every} needs an output "
                             f"directory (out_dir) to write the checkpoints to")
        N, R = data[ENTITY].num_nodes, data.num_relations
        if model.num_nodes != N or model.num_relations != R:
            raise ValueError(f"the model has {model.num_nodes} entities and "
                             f"{model.num_relations} relations, the data {N} and {R}")
        if cfg.val_split == 'val_clean' and split_key('val_clean') not in data[REL]:
            data = copy.copy(data)
            data[REL][split_key('val_clean')] = clean_val_mask(data)
            self.data = data
        self.train_triples = [x.to(self.device) for x in get_triples(data, 'train')]
        self.val_triples = get_triples(data, cfg.val_split)
        self.test_triples = get_triples(data, 'test')
        self._check_splits()
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        self.model_signature = model_signature(self.model)
        self.known = KnownTriples.from_data(data, 'all').to(self.device)
        self.categories = relation_categories(*get_triples(data, 'all'), R)
        self.entity_complete = entity_completeness(data)
        self.regime = self._make_regime()
        self.one_to_n = self.regime.name == '1-n'
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.comat, self.generator_optimizer = None, None
        adversary = cfg.adversary()
        if adversary is not None:  # self.comat: CoMAT, MAT or MMKRLAdversary
            key, options = adversary
            if self.one_to_n:
                raise ValueError(f"the adversarial training {key} trains with negative "
                                 f"sampling; set regime='negative_sampling' or drop {key}")
            from torch_mmkg import training
            make = getattr(training, ADVERSARIES[key])
            self.comat = make(self.model, **options)  # on the model's device
            self.generator_optimizer = torch.optim.Adam(
                self.comat.generator_parameters(), lr=self.comat.generator_lr or cfg.lr)
        # Parameters with their own objective (e.g. MoMoK's CLUB estimators), stepped after
        # every main step by their own optimiser.
        self.auxiliary_parameters = list(self.model.auxiliary_parameters())
        self.auxiliary_optimizer = (torch.optim.Adam(self.auxiliary_parameters, lr=cfg.lr)
                                    if self.auxiliary_parameters else None)
        self.optimizer = self._make_optimizer()
        self._sync = {'synced': False}
        if self.world > 1:  # the same start everywhere; gradients averaged before each step
            D.broadcast_module(self.model)
            D.broadcast_module(self.regime)
            for opt in (self.optimizer, self.auxiliary_optimizer, self.generator_optimizer):
                if opt is not None:
                    D.sync_gradients_before_step(opt, self._sync)
        self.loader = self._make_loader()
        self.evaluator = RankingEvaluator(self.known, cfg.eval_batch_size,
                                          progress=cfg.progress,
                                          exclude_query_entity=cfg.exclude_query_entity)
        self.state: Dict[str, Any] = {
            'epoch': 0, 'best_epoch': 0,
            'best_metric': -math.inf if cfg.maximize else math.inf,
            'bad_evals': 0, 'history': [], 'train_seconds': 0.0, 'resumes': []}
        self.best_state = copy.deepcopy(self.model.state_dict())

    def _check_splits(self):
        cfg = self.config
        if self.train_triples[0].numel() == 0:
            raise ValueError("the training split is empty (0 triples): there is nothing to "
                             "train on")
        if self.val_triples[0].numel() == 0:
            val_rows = int(get_triples(self.data, 'val')[0].numel())
            if cfg.val_split == 'val_clean' and val_rows:
                raise ValueError(
                    f"the cleaned validation split is empty: all {val_rows} validation triples "
                    f"repeat training triples or each other, so model selection would compare "
                    f"nothing; select on val_split='val' (leaky) or give the graph a validation "
                    f"split disjoint from training")
            raise ValueError(f"the validation split '{cfg.val_split}' is empty (0 triples): "
                             f"model selection needs validation triples")
        if cfg.test and self.test_triples[0].numel() == 0:
            raise ValueError("the test split is empty (0 triples); pass test=False to train "
                             "without a final test")

    def _improves(self, value: float) -> bool:
        best = self.state['best_metric']
        return value > best if self.config.maximize else value < best

    # Building blocks ##########################################################################

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        cls = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW,
               'adagrad': torch.optim.Adagrad, 'sgd': torch.optim.SGD}[cfg.optimizer]
        aux = {id(p) for p in self.auxiliary_parameters}
        params = [p for p in self.model.parameters() if id(p) not in aux]
        if self.comat is not None:  # the MLP discriminator of the CoMAT ablation
            params += list(self.comat.critic_parameters())
        groups = self.regime.param_groups()  # a regime's own parts (KBGAN's generator, ...)
        if groups:
            return cls([{'params': params}] + groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _make_regime(self):
        cfg, model = self.config, self.model
        name = cfg.regime or model.default_regime
        loss = None
        if cfg.loss is not None:
            kwargs = {} if cfg.label_smoothing is None else {'label_smoothing': cfg.label_smoothing}
            try:
                loss = LOSSES.build(cfg.loss, **kwargs)
            except TypeError:
                raise ValueError(f"label_smoothing applies to the 1-N losses, not to "
                                 f"{cfg.loss!r}") from None
        elif cfg.label_smoothing is not None:
            if name != '1-n':
                raise ValueError("label_smoothing applies to the 1-N losses; set regime='1-n' "
                                 "or drop label_smoothing")
            loss = BCELoss(cfg.label_smoothing)
        if name not in ('negative_sampling', '1-n'):  # KBGAN, MANS, MMRNS: options and parts
            try:
                regime = REGIMES[name](loss, cfg.num_negatives, cfg.sampling, cfg.twins,
                                       side_per=cfg.corrupt_side_per, **(cfg.regime_args or {}))
            except TypeError as e:
                raise ValueError(f"bad regime_args for the {name} regime: {e}") from None
            return regime.bind(model, self.data)
        if cfg.regime_args:
            own = [n for n in REGIMES if n not in ('1-n', 'negative_sampling')]
            raise ValueError(f"regime_args configure the regimes with options of their own "
                             f"({', '.join(own)}), not {name!r}")
        if name == '1-n':
            if cfg.twins:
                raise ValueError("twins negative sampling needs negative-sampling training, "
                                 "not the 1-N regime")
            if cfg.corrupt_side_per != 'positive':
                raise ValueError("corrupt_side_per applies to negative-sampling training, "
                                 "not the 1-N regime")
            return OneToN(loss)
        return NegativeSampling(loss, cfg.num_negatives, cfg.sampling, cfg.twins,
                                side_per=cfg.corrupt_side_per)

    def _make_loader(self):
        cfg, model = self.config, self.model
        h, r, t = self.train_triples
        known = (KnownTriples(h, r, t, model.num_nodes, model.num_relations)
                 if cfg.filter_negatives and not self.one_to_n else None)
        return self.regime.loader(model, h, r, t, known=known, generator=self.generator,
                                  batch_size=cfg.batch_size, shuffle=True,
                                  replacement=cfg.sample_with_replacement)

    # Checkpoints ##############################################################################

    def _rng_state(self) -> Dict[str, Any]:
        # Plain containers and tensors only, so that the checkpoint loads without unpickling
        # any class (numpy's state becomes a tensor).
        name, keys, pos, has_gauss, cached = np.random.get_state()
        out = {'generator': self.generator.get_state(), 'torch': torch.get_rng_state(),
               'numpy': {'name': str(name), 'keys': torch.from_numpy(keys.astype(np.int64)),
                         'pos': int(pos), 'has_gauss': int(has_gauss),
                         'cached_gaussian': float(cached)},
               'python': random.getstate(), 'device_type': self.device.type}
        if torch.cuda.is_available():
            out['cuda'] = torch.cuda.get_rng_state_all()
        return out

    def _set_rng_state(self, s: Dict[str, Any], path: str):
        written_on = s.get('device_type', self.generator.device.type)
        if written_on != self.generator.device.type:
            raise ValueError(f"{path}: the run was written on a {written_on} device and cannot "
                             f"continue on {self.device}: its random streams differ; resume on "
                             f"a {written_on} device")
        self.generator.set_state(s['generator'].cpu())
        torch.set_rng_state(s['torch'].cpu())
        state = s['numpy']
        if isinstance(state, dict):
            state = (state['name'], state['keys'].cpu().numpy().astype(np.uint32),
                     state['pos'], state['has_gauss'], state['cached_gaussian'])
        np.random.set_state(state)
        py = s['python']
        random.setstate((py[0], tuple(py[1]), py[2]))
        if 'cuda' in s and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in s['cuda']])

    @property
    def checkpoint_path(self) -> Optional[str]:
        return osp.join(self.out_dir, 'checkpoint.pt') if self.out_dir else None

    def save_checkpoint(self, path: Optional[str] = None):
        r"""Writes everything needed to resume (atomically: a crash never leaves a torn
        file). The file holds tensors and plain Python data only, so that
        :meth:`load_checkpoint` reads it without unpickling any class."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no out_dir configured and no checkpoint path given")
        ckpt = {'format': CHECKPOINT_FORMAT, 'model': self.model.state_dict(),
                'optimizer': self.optimizer.state_dict(), 'best_state': self.best_state,
                'state': self.state, 'rng': self._rng_state(), 'config': self.config.to_dict(),
                'model_signature': self.model_signature}
        if self.comat is not None:
            ckpt['comat'] = self.comat.state_dict()
            ckpt['generator_optimizer'] = self.generator_optimizer.state_dict()
        if self.auxiliary_optimizer is not None:
            ckpt['auxiliary_optimizer'] = self.auxiliary_optimizer.state_dict()
        regime_state = self.regime.state_dict()
        if regime_state:  # a regime's parts and statistics (KBGAN's generator, baseline...)
            ckpt['regime'] = regime_state
        atomic_torch_save(ckpt, path)

    def _check_resumable(self, ckpt: Dict[str, Any], path: str):
        conflicts = self.config.resume_conflicts(ckpt['config'])
        if conflicts:
            changes = '; '.join(f"{k}: {old!r} in the checkpoint, {new!r} now"
                                for k, (old, new) in sorted(conflicts.items()))
            raise ValueError(f"{path}: cannot resume with changed training options ({changes}). "
                             f"Only {', '.join(RESUMABLE_CHANGES)} may change on resume; start "
                             f"a new run (another output directory) to change the others")
        saved = ckpt.get('model_signature')
        if saved is not None:
            now = self.model_signature
            diff = sorted(k for k in set(saved) | set(now)
                          if k not in saved or k not in now or not _same(saved[k], now[k]))
            if diff:
                shown = '; '.join(f"{k}: {saved.get(k, '(absent)')!r} in the checkpoint, "
                                  f"{now.get(k, '(absent)')!r} now" for k in diff[:8])
                raise ValueError(f"{path}: the checkpoint was written by another model "
                                 f"({shown}{'; ...' if len(diff) > 8 else ''}); build the model "
                                 f"as in the interrupted run")

    def load_checkpoint(self, path: Optional[str] = None):
        r"""Restores a checkpoint written by :meth:`save_checkpoint`.

        Raises:
            FileNotFoundError: if there is no checkpoint.
            UnsafeFileError: naming the file, for a truncated, corrupt or foreign file (nothing
                in it is run).
            ValueError: naming the file, when training options other than
                :data:`~torch_mmkg.training.config.RESUMABLE_CHANGES` changed, or the model
                differs (class, scalar hyper-parameters, parameter shapes, or the features it
                was trained on).
        """
        path = path or self.checkpoint_path
        if path is None or not osp.exists(path):
            raise FileNotFoundError(f"no checkpoint at {path}")
        # numpy arrays are admitted for checkpoints written by torch_mmkg 0.1.
        ckpt = safe_load(path, 'checkpoint', map_location=self.device,
                         allowed=(np.ndarray, ), allowed_globals=numpy_globals())
        missing = ([k for k in _CHECKPOINT_KEYS if k not in ckpt]
                   if isinstance(ckpt, dict) else list(_CHECKPOINT_KEYS))
        if missing:
            raise UnsafeFileError(f"{path}: not a torch_mmkg training checkpoint (it lacks "
                                  f"{', '.join(missing)})")
        self._check_resumable(ckpt, path)
        extra = ckpt['model'].get('_extra_state') if isinstance(ckpt['model'], dict) else None
        saved = extra.get('feature_fingerprint') if isinstance(extra, dict) else None
        if saved is not None and hasattr(self.model, 'feature_fingerprint'):
            diff = feature_mismatch(saved, self.model.feature_fingerprint())
            if diff:
                raise ValueError(f"{path}: the checkpoint's model was trained on other "
                                 f"features than this one ({diff}); build the model from the "
                                 f"same data to resume")
        try:
            with warnings.catch_warnings():  # compared above
                warnings.simplefilter('ignore', FeatureMismatchWarning)
                self.model.load_state_dict(ckpt['model'])
            self.optimizer.load_state_dict(ckpt['optimizer'])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: the checkpoint does not fit this model and optimiser: "
                             f"{e}") from None
        self.best_state = ckpt['best_state']
        self.state = ckpt['state']
        self.state.setdefault('resumes', [])
        self._set_rng_state(ckpt['rng'], path)
        if self.comat is not None:
            if 'comat' not in ckpt:
                raise ValueError(f"{path} was written without CoMAT; cannot resume a CoMAT run "
                                 f"from it")
            self.comat.load_state_dict(ckpt['comat'])
            self.generator_optimizer.load_state_dict(ckpt['generator_optimizer'])
        if self.auxiliary_optimizer is not None:
            if 'auxiliary_optimizer' not in ckpt:
                raise ValueError(f"{path} holds no optimiser state for the model's auxiliary "
                                 f"parameters; it was written by another kind of run")
            self.auxiliary_optimizer.load_state_dict(ckpt['auxiliary_optimizer'])
        if self.regime.state_dict():
            if 'regime' not in ckpt:
                raise ValueError(f"{path} holds no state of the {self.regime.name} regime; it "
                                 f"was written by another kind of run")
            self.regime.load_state_dict(ckpt['regime'])
        changed = {k: [ckpt['config'].get(k), v] for k, v in self.config.to_dict().items()
                   if k in RESUMABLE_CHANGES and ckpt['config'].get(k) != v}
        self.state['resumes'].append({'epoch': self.state['epoch'], 'changed': changed})

    # Loops ####################################################################################

    def train_epoch(self, epoch: int) -> float:
        r"""One pass over the training triples; returns the mean batch loss."""
        model, cfg = self.model, self.config
        model.train()
        self.regime.start_epoch(epoch, cfg.epochs)
        total, count = 0.0, 0
        bar = tqdm(self.loader, desc=f'Epoch {epoch:03d}', leave=False,
                   disable=not cfg.progress)
        for i, batch in enumerate(bar):
            if self._stop_requested:
                self._interrupt(epoch)
            # Distributed: this rank's shard of the global batch, its loss weighted by its
            # share, so that the averaged gradient is the global batch's.
            share, weight = 1.0, 1.0
            if self.world > 1:
                shard, local, size = D.shard_batch(batch, self.rank, self.world)
                if size >= self.world:
                    batch, share, weight = shard, local / size, local / size * self.world
                else:  # fewer rows than ranks: each trains the whole batch (the mean of equal
                    # gradients is the batch's), so every rank joins the forward's collectives
                    share = 1.0 / self.world
            loss = self._train_step(batch, epoch, i, weight)
            total += float(loss.detach()) * share
            count += 1
        if self.world > 1:  # the mean over the global batches
            total = D.all_reduce_sum(total, self.device)
        return total / max(count, 1)

    def _autocast(self):
        r"""bfloat16 autocast for :obj:`precision='bf16'` (the optimiser steps in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.config.precision == 'bf16')

    def _train_step(self, batch, epoch: int, i: int, weight: float) -> torch.Tensor:
        r"""One optimiser step on a batch (the forward under autocast with bf16); returns the
        batch's loss, unweighted."""
        model, cfg = self.model, self.config
        if self.comat is not None:  # one critic step, one generator step
            outputs = []

            def kgc_loss(b):  # the regime's loss; its context feeds the auxiliary step
                with self._autocast():
                    outputs.append(self.regime.loss(model, b))
                return outputs[-1].loss * weight if weight != 1.0 else outputs[-1].loss

            self.comat.train_step(batch, self.optimizer, self.generator_optimizer,
                                  cfg.grad_clip, kgc_loss=kgc_loss)
            loss = outputs[-1].loss
            self._check_finite(loss, epoch, i)
            self._auxiliary_step(outputs[-1].context)
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.regime.loss(model, batch)
        loss = out.loss.float()
        self._check_finite(loss, epoch, i)
        (loss * weight if weight != 1.0 else loss).backward()
        if self.world > 1:  # averaged before clipping, as one process would clip
            D.average_gradients([p for g in self.optimizer.param_groups for p in g['params']])
            self._sync['synced'] = True
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            regime_params = [p for g in self.regime.param_groups() for p in g['params']]
            if regime_params:  # a regime's own parts, clipped on their own
                torch.nn.utils.clip_grad_norm_(regime_params, cfg.grad_clip)
        self.optimizer.step()
        self._auxiliary_step(out.context)
        return loss

    def request_stop(self):
        r"""Asks :meth:`fit` to stop before the next batch (safe to call from a signal
        handler): the epoch in progress is abandoned and :class:`TrainingInterrupted` raised;
        the last checkpoint resumes the run."""
        self._stop_requested = True

    def _interrupt(self, epoch: int):
        self._stop_requested = False
        done = self.state['epoch']
        path = self.checkpoint_path
        saved = path if path and osp.exists(path) else None
        where = (f"resume from {saved} (fit(resume=True), or torch-mmkg train --resume "
                 f"{self.out_dir})" if saved else "no checkpoint was written")
        raise TrainingInterrupted(f"training interrupted during epoch {epoch} after {done} "
                                  f"complete epochs; {where}", done, saved)

    def _auxiliary_step(self, context: Dict[str, Any]):
        if self.auxiliary_optimizer is None:
            return
        self.auxiliary_optimizer.zero_grad(set_to_none=True)
        aux = self.model.auxiliary_loss(context.get('entity_index'))
        if aux is not None:
            aux.backward()
            self.auxiliary_optimizer.step()

    def _check_finite(self, loss: torch.Tensor, epoch: int, i: int):
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {float(loss.detach())} at epoch {epoch}, batch "
                f"{i + 1} of {len(self.loader)}; lower the learning rate (now "
                f"{self.config.lr}), enable grad_clip, or check the input features for NaN/Inf")

    def _check_divergence(self, loss: float, epoch: int):
        factor = self.config.divergence_factor
        history = self.state['history']
        first = history[0]['loss'] if history else loss
        if factor is None or not math.isfinite(first):
            return
        limit = factor * max(abs(first), 1.0)
        if abs(loss) > limit:
            raise TrainingDivergedError(
                f"training diverged: the mean loss of epoch {epoch} is {loss:.4g}, more than "
                f"divergence_factor={factor:g} times the first epoch's {first:.4g}; lower the "
                f"learning rate (now {self.config.lr}), enable grad_clip, or check the input "
                f"features (set divergence_factor=None to train on regardless)")

    def evaluate(self, split: str = 'test', model_state: Optional[Dict] = None):
        r"""Ranks the triples of :obj:`split` (:obj:`"val"`, :obj:`"val_clean"`,
        :obj:`"test"`), optionally with another model state, and returns the
        :class:`~torch_mmkg.evaluation.RankingResult`."""
        triples = {'test': self.test_triples, self.config.val_split: self.val_triples}.get(
            split) or get_triples(self.data, split)
        if model_state is None:
            return self._rank(triples)
        current = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(model_state)
        try:
            return self._rank(triples)
        finally:
            self.model.load_state_dict(current)

    def _rank(self, triples):
        if self.world == 1:
            return self.evaluator.evaluate(self.model, *triples)
        start, end = D.shard_bounds(int(triples[0].numel()), self.rank, self.world)
        local = self.evaluator.evaluate(self.model, *(x[start:end] for x in triples))
        return D.gather_ranking(local, len(self.evaluator.sides))

    def fit(self, resume: bool = False, stop_after_epoch: Optional[int] = None
            ) -> Dict[str, Any]:
        r"""Trains, selects on validation, tests the selected model and returns the results.

        Args:
            resume (bool, optional): Continue from :obj:`out_dir/checkpoint.pt`.
                (default: :obj:`False`)
            stop_after_epoch (int, optional): Return after this epoch without testing,
                as an interruption would (for tests and schedulers). (default: :obj:`None`)
        """
        cfg = self.config
        deterministic = (cfg.deterministic if cfg.deterministic is not None
                         else self.device.type == 'cpu')
        before = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            return self._fit(resume, stop_after_epoch)
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    def _fit(self, resume: bool, stop_after_epoch: Optional[int]) -> Dict[str, Any]:
        cfg = self.config
        if resume:
            self.load_checkpoint()
        self.callbacks.on_fit_start(self)
        start_time = time.perf_counter()
        budget = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
        stop_reason = 'epochs'
        epoch_times: List[float] = [h['seconds'] for h in self.state['history']
                                    if 'seconds' in h]
        while self.state['epoch'] < cfg.epochs:
            epoch = self.state['epoch'] + 1
            t0 = time.perf_counter()
            loss = self.train_epoch(epoch)
            self._check_divergence(loss, epoch)
            seconds = time.perf_counter() - t0
            self.state['train_seconds'] += seconds
            epoch_times.append(seconds)
            self.state['epoch'] = epoch
            record = {'epoch': epoch, 'loss': loss, 'seconds': seconds,
                      'elapsed_train_seconds': self.state['train_seconds']}
            out_of_time = budget is not None and time.perf_counter() - start_time >= budget
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time:
                res = self.evaluate(cfg.val_split)
                val = res.metrics('realistic', 'both')
                record['val'] = val
                record['val_seconds'] = res.seconds
                if not math.isfinite(val[cfg.metric]):
                    raise TrainingDivergedError(
                        f"the validation {cfg.metric} is {val[cfg.metric]} after epoch {epoch} "
                        f"(over {val['count']} queries): the model's scores are not finite")
                if self._improves(val[cfg.metric]):
                    self.state.update(best_metric=val[cfg.metric], best_epoch=epoch,
                                      bad_evals=0)
                    self.best_state = copy.deepcopy(self.model.state_dict())
                    if self.out_dir and self.is_main:
                        atomic_torch_save(self.best_state,
                                          osp.join(self.out_dir, 'best_model.pt'))
                else:
                    self.state['bad_evals'] += 1
                self._log(f"epoch {epoch:4d}  loss {loss:.4f}  val mrr {val['mrr']:.4f}  "
                          f"hits@10 {val['hits@10']:.4f}  ({res.seconds:.1f}s)")
                self.callbacks.on_validation_end(self, epoch, val)
            self.state['history'].append(record)
            self.callbacks.on_epoch_end(self, record)
            if (cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and self.out_dir
                    and self.is_main):
                self.save_checkpoint()
                self.callbacks.on_checkpoint(self, self.checkpoint_path)
            if cfg.patience and self.state['bad_evals'] >= cfg.patience:
                stop_reason = 'early_stopping'
                break
            if out_of_time:
                stop_reason = 'time_budget'
                break
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return {'interrupted_at_epoch': epoch}
        return self.finish(stop_reason, epoch_times)

    def _log(self, message: str):
        if not self.is_main:
            return
        logger.info(message)
        if self.config.progress and not logger.hasHandlers():  # nothing else would show it
            tqdm.write(message)

    def finish(self, stop_reason: str, epoch_times: List[float]) -> Dict[str, Any]:
        r"""Loads the selected model, tests it and writes the results."""
        self.model.load_state_dict(self.best_state)
        results: Dict[str, Any] = {
            'model': self.model.__class__.__name__,
            'model_repr': repr(self.model),
            'num_parameters': sum(p.numel() for p in self.model.parameters()),
            'config': self.config.to_dict(),
            'device': str(self.device),
            'stop_reason': stop_reason,
            'epochs_trained': self.state['epoch'],
            'best_epoch': self.state['best_epoch'],
            'best_val': {self.config.metric: self.state['best_metric']},
            'resumes': self.state.get('resumes', []),
            'seconds_per_epoch_median': statistics.median(epoch_times) if epoch_times else None,
            'train_seconds': self.state['train_seconds'],
            'history': self.state['history'],
        }
        if self.config.test:
            res = self.evaluate('test')
            results['test'] = res.to_dict(self.categories, self.entity_complete)
        results['peak_memory'] = _peak_memory(self.device)
        results['world_size'] = self.world
        if self.out_dir and self.is_main:
            atomic_torch_save(self.best_state, osp.join(self.out_dir, 'best_model.pt'))
            with open(osp.join(self.out_dir, 'results.json'), 'w') as f:
                json.dump(results, f, indent=2, default=float)
        self.callbacks.on_fit_end(self, results)
        return results
