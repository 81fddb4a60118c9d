r"""Hyper-parameter search with `Optuna <https://optuna.org>`_: :obj:`torch-mmkg tune`.

A search config is an ordinary experiment config (see :mod:`torch_mmkg.experiment.config`)
with one more section, :obj:`search`, mapping :obj:`section.key` (a field of
:class:`~torch_mmkg.training.TrainConfig` under :obj:`train`, or a constructor keyword under
:obj:`model_args`; deeper keys reach into mappings such as :obj:`train.regime_args.alpha`)
to the range it is drawn from:

.. code-block:: yaml

    dataset: DB15K
    model: distmult
    model_args: {hidden_channels: 64}
    train: {epochs: 50, eval_every: 5, metric: mrr, patience: 3}
    search:
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      model_args.hidden_channels: {type: int, low: 32, high: 256, step: 32}
      train.num_negatives: {type: categorical, choices: [16, 64, 256]}

.. code-block:: bash

    pip install torch_mmkg[tune]
    torch-mmkg tune search.yaml --trials 30 --out runs/tune --timeout 120
    torch-mmkg train --config runs/tune/best_config.yaml --out runs/best

Every trial trains the config with the sampled values and :obj:`train.test` switched off:
trials are compared on the validation metric of :obj:`train.metric` (its best value over the
validations of the trial; MR is minimised, the others maximised), and the test split is never
ranked while tuning. The metric of every validation is reported to Optuna, whose pruner (the
median rule by default) stops trials that fall behind the earlier ones at the same epoch. A
trial whose training diverges (:class:`~torch_mmkg.training.TrainingDivergedError`) is
recorded as failed and the search goes on. The sampler is Optuna's TPE, seeded, so that a
study is reproducible.

With :obj:`--out DIR` the study is kept in :obj:`DIR/study.db` (SQLite, data only), every
trial trains into the run directory :obj:`DIR/trial_<n>`, and after every trial
:obj:`DIR/trials.csv` (one row per trial: number, state, value, best epoch, epochs trained,
seconds, and one column per searched key) and :obj:`DIR/best_config.yaml` (the config of the
best trial so far, without :obj:`search` and with :obj:`test` on, ready for
:obj:`torch-mmkg train --config`) are rewritten. Running the same command again resumes the
study: :obj:`--trials` is the study's total, so only the missing trials run.
"""
import argparse
import copy
import csv
import dataclasses
import json
import logging
import math
import os
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Union

from torch_mmkg.data.serialization import atomic_write
from torch_mmkg.experiment.config import load_config_file, save_config

__all__ = ['tune', 'check_search_space', 'trial_config', 'best_config', 'summary',
           'add_tune_parser', 'tune_command', 'SEARCH_SECTIONS']

logger = logging.getLogger('torch_mmkg')

#: The config sections whose keys a search may draw.
SEARCH_SECTIONS = ('train', 'model_args')
#: Training options a search may not draw (the trials never test; :func:`tune` decides).
_FIXED = ('test', )
_SPEC_KEYS = {'float': {'type', 'low', 'high', 'log', 'step'},
              'int': {'type', 'low', 'high', 'log', 'step'},
              'categorical': {'type', 'choices'}}


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError("torch-mmkg tune needs Optuna: pip install torch_mmkg[tune] (or pip "
                          "install 'optuna>=5,<6')") from e
    return optuna


# The search space ############################################################################

def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_spec(key: str, spec: Any) -> Dict[str, Any]:
    where = f"search: {key}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping such as {{type: float, low: 1.0e-4, "
                         f"high: 1.0e-1, log: true}}, got {spec!r}")
    kind = spec.get('type')
    if kind not in _SPEC_KEYS:
        raise ValueError(f"{where}: type must be one of {sorted(_SPEC_KEYS)}, got {kind!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS[kind])
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown} for type {kind}; expected "
                         f"{sorted(_SPEC_KEYS[kind])}")
    if kind == 'categorical':
        choices = spec.get('choices')
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: choices must be a non-empty list, got {choices!r}")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise ValueError(f"{where}: a choice must be a number, string, boolean or "
                                 f"null, got {c!r}")
        return {'type': kind, 'choices': list(choices)}
    low, high = spec.get('low'), spec.get('high')
    if kind == 'int':
        for name, v in (('low', low), ('high', high)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{where}: {name} must be an integer, got {v!r}")
    else:
        for name, v in (('low', low), ('high', high)):
            if not _number(v):
                raise ValueError(f"{where}: {name} must be a finite number, got {v!r}")
    if low >= high:
        raise ValueError(f"{where}: low must be < high, got low={low!r}, high={high!r}")
    log = spec.get('log', False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: log must be true or false, got {log!r}")
    step = spec.get('step')
    if kind == 'int':
        if step is not None and (not isinstance(step, int) or isinstance(step, bool)
                                 or step < 1):
            raise ValueError(f"{where}: step must be an integer >= 1, got {step!r}")
        if log and step not in (None, 1):
            raise ValueError(f"{where}: a log scale takes no step (got step={step})")
        if log and low < 1:
            raise ValueError(f"{where}: a log scale needs low >= 1, got low={low}")
        out = {'type': kind, 'low': low, 'high': high, 'log': log, 'step': step or 1}
    else:
        if step is not None and (not _number(step) or step <= 0):
            raise ValueError(f"{where}: step must be a number > 0, got {step!r}")
        if log and step is not None:
            raise ValueError(f"{where}: a log scale takes no step (got step={step})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log scale needs low > 0, got low={low}")
        out = {'type': kind, 'low': float(low), 'high': float(high), 'log': log,
               'step': None if step is None else float(step)}
    return out


def _examples(spec: Dict[str, Any]) -> List[Any]:
    r"""Values of the range that a trial may draw: its ends, or every choice."""
    if spec['type'] == 'categorical':
        return spec['choices']
    high = spec['high']
    if spec['type'] == 'int':
        high = spec['low'] + (spec['high'] - spec['low']) // spec['step'] * spec['step']
    return [spec['low'], high]


def _model_keywords(model: str) -> Optional[set]:
    r"""The keywords the model's constructor accepts, or :obj:`None` if any (**kwargs)."""
    import inspect
    from torch_mmkg.nn import MODELS
    cls = MODELS[model]
    init = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in init):
        return None
    fns = ([cls.from_data] if hasattr(cls, 'from_data') else []) + [cls.__init__]
    names = {'hidden_channels'}
    for fn in fns:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in (
                    'self', 'cls', 'data', 'num_nodes', 'num_relations'):
                names.add(p.name)
    return names


def check_search_space(cfg: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    r"""Checks the :obj:`search` section of the config :obj:`cfg` and the config itself, before
    any trial trains.

    Args:
        cfg (dict): A config with a :obj:`search` section.

    Returns:
        dict: :obj:`{key: spec}` with every spec complete (:obj:`log` and :obj:`step` filled
        in), in the order of the config.

    Raises:
        ValueError: naming the key, for a missing or empty :obj:`search`; a key outside
            :data:`SEARCH_SECTIONS`, not a field of :class:`~torch_mmkg.training.TrainConfig`,
            or not a keyword of the model (when its constructor takes no :obj:`**kwargs`);
            an unknown :obj:`type`; :obj:`low >= high`; empty :obj:`choices`; a value of the
            range that the training options reject (:obj:`train.lr` from 0); or a bad config
            otherwise (as :func:`~torch_mmkg.experiment.resolve`).
    """
    from torch_mmkg.experiment.run import resolve
    from torch_mmkg.training import TrainConfig
    search = cfg.get('search')
    if not isinstance(search, dict) or not search:
        raise ValueError("the config has no search section (a mapping such as {train.lr: "
                         "{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}): nothing to "
                         "tune")
    base = {k: v for k, v in cfg.items() if k != 'search'}
    if base.get('dataset') is None:
        raise ValueError("the config names no dataset")
    if base.get('model') is None:
        raise ValueError("the config names no model")
    resolved = resolve(base)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    keywords = None
    out: Dict[str, Dict[str, Any]] = {}
    for key, spec in search.items():
        parts = key.split('.') if isinstance(key, str) else []
        if len(parts) < 2 or parts[0] not in SEARCH_SECTIONS or not all(parts):
            raise ValueError(f"search: {key!r} must be SECTION.KEY with SECTION one of "
                             f"{list(SEARCH_SECTIONS)} (e.g. train.lr, "
                             f"model_args.hidden_channels)")
        section, name = parts[0], parts[1]
        if section == 'train':
            if name not in train_fields:
                raise ValueError(f"search: {key}: {name!r} is not a training option; known: "
                                 f"{sorted(train_fields)}")
            if name in _FIXED:
                raise ValueError(f"search: {key}: the trials never test (selection is on "
                                 f"validation only); {name!r} cannot be searched")
        else:
            if keywords is None:
                keywords = _model_keywords(resolved['model']) or {'*'}
            if '*' not in keywords and name not in keywords:
                raise ValueError(f"search: {key}: {resolved['model']} takes no argument "
                                 f"{name!r}; it takes {sorted(keywords)}")
        spec = _check_spec(key, spec)
        if section == 'train' and len(parts) == 2:
            for value in _examples(spec):
                try:
                    TrainConfig.from_dict({**resolved['train'], name: value})
                except (ValueError, TypeError) as e:
                    raise ValueError(f"search: {key}: the value {value!r} of its range is "
                                     f"invalid: {e}") from None
        out[key] = spec
    for key in out:  # a key inside another (train.regime_args and train.regime_args.x)
        for other in out:
            if other != key and other.startswith(key + '.'):
                raise ValueError(f"search: {key} and {other} overlap; search one of them")
    return out


def _set(cfg: Dict[str, Any], key: str, value: Any):
    parts = key.split('.')
    node = cfg
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ValueError(f"search: {key}: {'.'.join(parts[:i + 1])} is {child!r} in the "
                             f"config, not a mapping")
        else:
            child = node[part] = dict(child)
        node = child
    node[parts[-1]] = value


def trial_config(cfg: Dict[str, Any], params: Dict[str, Any], test: bool = False
                 ) -> Dict[str, Any]:
    r"""The config :obj:`cfg` without its :obj:`search` section, with the values
    :obj:`params` (:obj:`{"train.lr": 0.01, ...}`) set and :obj:`train.test` set to
    :obj:`test`.

    Args:
        cfg (dict): The search config.
        params (dict): Values by :obj:`section.key`.
        test (bool, optional): Whether the run tests its selected model (the trials do not).
            (default: :obj:`False`)
    """
    out = copy.deepcopy({k: v for k, v in cfg.items() if k != 'search'})
    for section in SEARCH_SECTIONS:
        out[section] = dict(out.get(section) or {})
    for key, value in params.items():
        _set(out, key, value)
    out['train']['test'] = bool(test)
    return out


def best_config(cfg: Dict[str, Any], study) -> Dict[str, Any]:
    r"""The config of the best trial of :obj:`study`: :func:`trial_config` with
    :obj:`test` on, ready to be trained (:func:`~torch_mmkg.experiment.train`).

    Raises:
        ValueError: if no trial has completed.
    """
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    if not done:
        raise ValueError(f"study {study.study_name!r}: no trial has completed, so there is no "
                         f"best config")
    return trial_config(cfg, study.best_trial.params, test=True)


# The study ###################################################################################

def _sample(trial, key: str, spec: Dict[str, Any]) -> Any:
    if spec['type'] == 'categorical':
        return trial.suggest_categorical(key, spec['choices'])
    if spec['type'] == 'int':
        return trial.suggest_int(key, spec['low'], spec['high'], step=spec['step'],
                                 log=spec['log'])
    return trial.suggest_float(key, spec['low'], spec['high'], step=spec['step'],
                               log=spec['log'])


def _pruning_callback(trial, metric: str):
    from torch_mmkg.training.callbacks import Callback
    optuna = _optuna()

    class PruningCallback(Callback):
        r"""Reports the validation metric of every validation epoch to the trial and stops
        the training when the pruner says so."""
        def on_validation_end(self, trainer, epoch, metrics):
            value = float(metrics[metric])
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric} {value:.4g})")

    return PruningCallback()


def _pruner(pruner: Union[str, Any], startup_trials: int, warmup_epochs: int):
    optuna = _optuna()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    name = str(pruner).strip().lower() if pruner is not None else 'none'
    if name == 'median':
        if startup_trials < 0 or warmup_epochs < 0:
            raise ValueError(f"pruner_startup_trials and pruner_warmup_epochs must be >= 0, "
                             f"got {startup_trials} and {warmup_epochs}")
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_epochs)
    if name == 'none':
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner must be 'median', 'none' or an optuna pruner, got {pruner!r}")


def _identity(cfg: Dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


_FINISHED = ('COMPLETE', 'PRUNED', 'FAIL')


def tune(cfg: Dict[str, Any], trials: int, out: Optional[str] = None,
         root: Optional[str] = None, timeout: Optional[float] = None, seed: int = 0,
         pruner: Union[str, Any] = 'median', callbacks: Optional[Iterable[Any]] = None,
         study_name: Optional[str] = None, pruner_startup_trials: int = 5,
         pruner_warmup_epochs: int = 0):
    r"""Searches the :obj:`search` space of the config :obj:`cfg` with Optuna, selecting on
    the validation metric :obj:`train.metric` (see :mod:`torch_mmkg.experiment.tune`).

    Args:
        cfg (dict): The config, with a :obj:`search` section (:func:`check_search_space`).
        trials (int): The number of trials of the study; a resumed study (:obj:`out`) runs
            only those it lacks (its complete, pruned and failed trials count).
        out (str, optional): The study directory: :obj:`study.db`, :obj:`trial_<n>/`,
            :obj:`trials.csv` and :obj:`best_config.yaml`. (default: :obj:`None`: the study is
            kept in memory and nothing is written)
        root (str, optional): Where registered datasets are processed (see
            :func:`~torch_mmkg.experiment.train`). (default: :obj:`None`)
        timeout (float, optional): Start no trial after this many minutes (a running trial
            finishes). (default: :obj:`None`)
        seed (int, optional): The seed of the TPE sampler: a study with the same seed, config
            and number of trials draws the same values. (default: :obj:`0`)
        pruner (str or optuna.pruners.BasePruner, optional): :obj:`"median"` (stop a trial
            whose metric at an epoch is worse than the median of the earlier trials' at that
            epoch), :obj:`"none"`, or an Optuna pruner. (default: :obj:`"median"`)
        callbacks (Iterable[Callback], optional): Trainer callbacks added to every trial (the
            same objects see every trial). (default: :obj:`None`)
        study_name (str, optional): The name of the study in :obj:`out/study.db`.
            (default: :obj:`"torch_mmkg"`)
        pruner_startup_trials (int, optional): The median pruner prunes nothing before this
            many trials have finished. (default: :obj:`5`)
        pruner_warmup_epochs (int, optional): The median pruner prunes no trial before this
            epoch. (default: :obj:`0`)

    Returns:
        optuna.Study: The study (:obj:`study.best_trial`, :obj:`study.trials_dataframe()`).

    Raises:
        ImportError: without Optuna (:obj:`pip install torch_mmkg[tune]`).
        ValueError: for a bad search space or config (before any trial), a bad
            :obj:`trials`, :obj:`timeout` or :obj:`pruner`, or a study in :obj:`out` that was
            started with another config.
    """
    from torch_mmkg.experiment.run import train
    from torch_mmkg.training import TrainConfig, TrainingDivergedError
    from torch_mmkg.training.callbacks import Callback
    space = check_search_space(cfg)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if timeout is not None and not (_number(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a number of minutes > 0, got {timeout!r}")
    extra = list(callbacks or ())
    for i, c in enumerate(extra):
        if not isinstance(c, Callback):
            raise TypeError(f"callbacks[{i}] must be a torch_mmkg.training.Callback, got "
                            f"{type(c).__name__}")
    optuna = _optuna()
    train_cfg = TrainConfig.from_dict(dict(cfg.get('train') or {}))
    metric = train_cfg.metric
    direction = 'maximize' if train_cfg.maximize else 'minimize'
    pruner = _pruner(pruner, pruner_startup_trials, pruner_warmup_epochs)
    sampler = optuna.samplers.TPESampler(seed=seed)
    name = study_name or 'torch_mmkg'
    storage = None
    if out:
        os.makedirs(out, exist_ok=True)
        storage = f"sqlite:///{osp.abspath(osp.join(out, 'study.db'))}"
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                study_name=name, direction=direction, load_if_exists=True)
    identity = _identity(cfg)
    saved = study.user_attrs.get('config')
    if saved is None:
        study.set_user_attr('config', identity)
        study.set_user_attr('metric', metric)
    elif saved != identity:
        raise ValueError(f"{out}: the study {name!r} in study.db was started with another "
                         f"config or search space; resume it with the same config, or give "
                         f"another --out or --study-name")
    done = sum(t.state.name in _FINISHED for t in study.trials)
    todo = trials - done
    if todo <= 0:
        logger.info(f"study {name!r} already has {done} finished trials (--trials {trials})")

    def objective(trial):
        params = {key: _sample(trial, key, spec) for key, spec in space.items()}
        run_dir = osp.join(out, f'trial_{trial.number}') if out else None
        trial_cfg = trial_config(cfg, params)
        trial_cfg['train'].setdefault('progress', False)
        logger.info(f"trial {trial.number}: " + ', '.join(
            f"{k}={_fmt(v)}" for k, v in params.items()))
        if run_dir:
            trial.set_user_attr('run', run_dir)
        try:
            results = train(trial_cfg, root=root, out=run_dir,
                            callbacks=[_pruning_callback(trial, metric)] + extra)
        except TrainingDivergedError as e:  # a failed trial (NaN), logged without traceback
            trial.set_user_attr('error', ' '.join(str(e).split()))
            return math.nan
        trial.set_user_attr('best_epoch', results['best_epoch'])
        trial.set_user_attr('epochs_trained', results['epochs_trained'])
        return float(results['best_val'][metric])

    def after_trial(study_, frozen):
        if frozen.state.name == 'FAIL' and frozen.user_attrs.get('error'):
            logger.warning(f"trial {frozen.number} failed: {frozen.user_attrs['error']}")
        if out:
            _write_outputs(study_, cfg, space, out)

    if todo > 0:
        study.optimize(objective, n_trials=todo,
                       timeout=None if timeout is None else 60.0 * timeout,
                       callbacks=[after_trial])
    if out:
        _write_outputs(study, cfg, space, out)
    return study


def _write_outputs(study, cfg: Dict[str, Any], space: Dict[str, Any], out: str):
    rows = []
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        seconds = (t.duration.total_seconds() if t.duration is not None else None)
        rows.append([t.number, t.state.name, t.value, t.user_attrs.get('best_epoch'),
                     steps[-1] if steps else None,
                     None if seconds is None else round(seconds, 3)] +
                    [t.params.get(k) for k in space])
    with atomic_write(osp.join(out, 'trials.csv'), newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(['number', 'state', 'value', 'best_epoch', 'last_epoch', 'seconds'] +
                   list(space))
        for row in rows:
            w.writerow(['' if v is None else v for v in row])
    if any(t.state.name == 'COMPLETE' for t in study.trials):
        tmp = save_config(best_config(cfg, study), osp.join(out, '.best_config.tmp.yaml'))
        os.replace(tmp, osp.join(out, 'best_config' + osp.splitext(tmp)[1]))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary(study, out: Optional[str] = None, top: int = 5) -> str:
    r"""A few lines on :obj:`study`: its trials by state, the best trial's value and values,
    the :obj:`top` completed trials, and the files written into :obj:`out`."""
    metric = study.user_attrs.get('metric', 'value')
    direction = study.direction.name.lower()
    counts: Dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines = [f"study {study.study_name!r}: {len(study.trials)} trials (" + ', '.join(
        f"{v} {k}" for k, v in sorted(counts.items())) + f"); {metric} ({direction}d on "
        f"validation)"]
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    if not done:
        lines.append("no trial completed")
        return '\n'.join(lines)
    best = study.best_trial
    lines.append(f"best trial {best.number}: {metric} {best.value:.4f}"
                 f" (epoch {best.user_attrs.get('best_epoch', '?')})")
    lines += [f"  {k}: {_fmt(v)}" for k, v in best.params.items()]
    ranked = sorted(done, key=lambda t: t.value, reverse=direction == 'maximize')[:top]
    if len(ranked) > 1:
        lines.append(f"top {len(ranked)}:")
        for t in ranked:
            lines.append(f"  trial {t.number:3d}  {metric} {t.value:.4f}  " + ', '.join(
                f"{k}={_fmt(v)}" for k, v in t.params.items()))
    if out:
        lines.append(f"best config: {osp.join(out, 'best_config.yaml')} (train it: torch-mmkg "
                     f"train --config {osp.join(out, 'best_config.yaml')} --out RUN)")
        lines.append(f"trials: {osp.join(out, 'trials.csv')}")
    return '\n'.join(lines)


# The command line ############################################################################

def add_tune_parser(subparsers) -> argparse.ArgumentParser:
    r"""Adds the :obj:`tune` command to :obj:`subparsers` (of :func:`torch_mmkg.cli.build_parser`)
    and returns its parser."""
    p = subparsers.add_parser(
        'tune', help='search hyper-parameters with Optuna (pruning on validation)',
        description='Search the `search:` section of a config with Optuna: each trial trains '
        'the config with sampled values, never tests, and reports its validation metric '
        '(train.metric) every validation so that the pruner can stop it early. Needs '
        'pip install torch_mmkg[tune].')
    p.add_argument('config', metavar='CONFIG',
                   help='a YAML or JSON config with a search: section mapping SECTION.KEY '
                   '(train.lr, model_args.hidden_channels) to {type: float|int|categorical, '
                   'low, high, log, step, choices}, or the name of a shipped config')
    p.add_argument('--trials', type=int, required=True, metavar='N',
                   help='the number of trials of the study (a resumed study runs the '
                   'missing ones)')
    p.add_argument('--out', default=None, metavar='DIR',
                   help='the study directory: study.db (resumable), trial_<n>/ run '
                   'directories, trials.csv and best_config.yaml (default: in memory, '
                   'nothing written)')
    p.add_argument('--timeout', type=float, default=None, metavar='MINUTES',
                   help='start no trial after this many minutes (default: no limit)')
    p.add_argument('--seed', type=int, default=0,
                   help='the seed of the TPE sampler (default: 0)')
    p.add_argument('--pruner', default='median', choices=['median', 'none'],
                   help='median: stop a trial whose validation metric at an epoch is worse '
                   'than the median of the earlier trials at that epoch; none: never '
                   '(default: median)')
    p.add_argument('--pruner-startup-trials', type=int, default=5, metavar='N',
                   help='prune nothing before N trials have finished (default: 5)')
    p.add_argument('--pruner-warmup-epochs', type=int, default=0, metavar='N',
                   help='prune no trial before epoch N (default: 0)')
    p.add_argument('--root', default=None,
                   help="where registered datasets are processed (default: the config's root, "
                   "else the data home)")
    p.add_argument('--study-name', default=None,
                   help="the study's name in DIR/study.db (default: the config file's name)")
    return p


def _config_path(value: str) -> str:
    if osp.isfile(value) or '/' in value or osp.sep in value:
        return value
    try:
        from torch_mmkg.configs import config_path
    except ImportError:  # pragma: no cover
        return value
    return config_path(value)


def tune_command(args: argparse.Namespace) -> int:
    r"""Runs :obj:`torch-mmkg tune` (see :func:`add_tune_parser`); prints the summary and
    returns the exit status (1 if no trial completed)."""
    path = _config_path(args.config)
    cfg = load_config_file(path)
    name = args.study_name or osp.splitext(osp.basename(path))[0]
    optuna = _optuna()
    verbosity = optuna.logging.get_verbosity()
    if getattr(args, 'quiet', False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = tune(cfg, args.trials, out=args.out, root=args.root, timeout=args.timeout,
                     seed=args.seed, pruner=args.pruner, study_name=name,
                     pruner_startup_trials=args.pruner_startup_trials,
                     pruner_warmup_epochs=args.pruner_warmup_epochs)
    finally:
        optuna.logging.set_verbosity(verbosity)
    print(summary(study, args.out))
    return 0 if any(t.state.name == 'COMPLETE' for t in study.trials) else 1
