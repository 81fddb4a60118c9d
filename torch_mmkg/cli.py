r"""The command line (:obj:`torch-mmkg`, or :obj:`python -m torch_mmkg`): train, evaluate,
predict, tune and list.

.. code-block:: bash

    torch-mmkg list models                   # every model, or one with its arguments:
    torch-mmkg list models rotate
    torch-mmkg train --dataset MKG-W --model rotate --dim 250 --epochs 200 \
        --lr 2e-3 --num-negatives 32 --model-arg margin=9 --out runs/rotate_mkgw
    torch-mmkg train --config native_db15k --epochs 10 --out runs/x   # a shipped config
    torch-mmkg train --resume runs/x --epochs 20      # continue a run (killed or finished)
    torch-mmkg evaluate runs/x                        # its test metrics, with breakdowns
    torch-mmkg predict runs/x --head Paris --relation capital_of -k 10
    torch-mmkg tune search.yaml --trials 20 --out runs/tune     # a config with a search:

A config (YAML or JSON) has the sections :obj:`dataset` (a registered name or the folder of
your own graph, see :class:`~torch_mmkg.datasets.MMKGFolder`), :obj:`dataset_args`,
:obj:`model`, :obj:`model_args` (constructor keywords, :obj:`hidden_channels` included),
:obj:`train` (fields of :class:`~torch_mmkg.training.TrainConfig`), and optionally
:obj:`root`, :obj:`transforms`, :obj:`entity_texts` and :obj:`trackers`. Every training field is
also a flag (:obj:`--num-negatives`, :obj:`--max-minutes`, ...); flags win over the file. A run
directory (:obj:`--out`) holds the resolved config with every default, the model's
constructor arguments, a fingerprint of the data, the history as it happens, checkpoints and
the best model (see :mod:`torch_mmkg.experiment.run`).

Names of models, datasets and of the :obj:`regime`, :obj:`optimizer`, :obj:`loss` and
:obj:`sampling` options are case-insensitive and ignore :obj:`'-'` and :obj:`'_'`
(:obj:`--model RotatE` is :obj:`rotate`); the saved config holds the canonical names. Values of
:obj:`--model-arg`, :obj:`--dataset-arg` and of mapping flags are read as YAML
(:obj:`modalities=[text]` is a list, :obj:`margin=9` a number).
"""
import argparse
import dataclasses
import json
import logging
import os.path as osp
import re
import sys
import typing
from typing import Any, Dict, List, Optional

from torch_mmkg.experiment.config import load_config_file, saved_config_path
from torch_mmkg.experiment.model import _check_modalities, build_model  # noqa: F401

__all__ = ['main', 'build_parser', 'resolve_config', 'run', 'load_config_file', 'build_model']

_saved_config_path = saved_config_path


def _literal(value: str) -> Any:
    r"""A command-line value as YAML (safe loader: no code runs), so that :obj:`[text]` is a
    list, :obj:`9` an int, :obj:`1e-3` a float and :obj:`true` a bool; a value YAML cannot
    read stays a string."""
    try:
        from torch_mmkg.experiment.config import _yaml_loader
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is in the test extra
        import ast
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    try:
        return yaml.load(value, Loader=_yaml_loader())
    except yaml.YAMLError:
        return value


def _mapping(value: str) -> Dict[str, Any]:
    out = _literal(value)
    if not isinstance(out, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as "
                                         f"\"{{adversarial_weight: 1e-4}}\" or {{}}, got "
                                         f"{value!r}")
    return out


def _boolean(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ('1', 'true', 'yes', 'on'):
        return True
    if v in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _field_type(f: dataclasses.Field):
    tp = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing))
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def docstring_args(obj: Any) -> Dict[str, str]:
    r"""The :obj:`Args:` section of :obj:`obj`'s Google-style docstring as
    :obj:`{name: description}`, with Sphinx roles reduced to their text: the help of a flag is
    the documentation of its field, so the two cannot drift apart."""
    doc = (getattr(obj, '__doc__', None) or '').expandtabs()
    lines = doc.splitlines()
    out: Dict[str, str] = {}
    inside, indent, current = False, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in ('Args:', 'Arguments:'):
            inside, indent, current = True, None, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        lead = len(line) - len(line.lstrip())
        if indent is None:
            indent = lead
        if lead < indent:
            inside = False
            continue
        m = re.match(r'^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$', stripped)
        if lead == indent and m:
            current = m.group(1)
            out[current] = m.group(3)
        elif current is not None:
            out[current] += ' ' + stripped
    return {k: _plain_text(v) for k, v in out.items()}


def _plain_text(text: str) -> str:
    text = re.sub(r':(?:obj|class|func|meth|attr|data|mod|math):`~?([^`<]*?)(?:\s*<[^>]*>)?`',
                  r'\1', text)
    text = re.sub(r'`([^`<]*?)\s*<[^>]*>`_', r'\1', text)
    text = text.replace('%', '%%')  # argparse formats help strings
    return ' '.join(text.split())


def _add_train_flags(p: argparse.ArgumentParser):
    from torch_mmkg.training import TrainConfig
    helps = docstring_args(TrainConfig)
    g = p.add_argument_group('training options (fields of TrainConfig; flags override the '
                             'config file)')
    for f in dataclasses.fields(TrainConfig):
        flag = '--' + f.name.replace('_', '-')
        tp = _field_type(f)
        text = helps.get(f.name)
        if not text:  # a field without documentation is a bug: test_cli checks none is
            text = 'undocumented'
        if tp is bool:
            g.add_argument(flag, dest=f.name, default=None, type=_boolean,
                           metavar='{true,false}', help=text)
        elif typing.get_origin(tp) is dict or tp is dict:
            g.add_argument(flag, dest=f.name, default=None, type=_mapping,
                           metavar="'{KEY: VALUE, ...}'", help=text)
        else:
            g.add_argument(flag, dest=f.name, type=tp, default=None,
                           metavar=tp.__name__.upper(), help=text)


def _add_common(p: argparse.ArgumentParser):
    p.add_argument('--traceback', action='store_true', default=argparse.SUPPRESS,
                   help='show the full traceback of an error instead of one line')
    p.add_argument('--quiet', action='store_true', default=argparse.SUPPRESS,
                   help='log warnings and errors only (no per-validation lines)')


def _version() -> str:
    import torch_mmkg
    return torch_mmkg.__version__


def build_parser() -> argparse.ArgumentParser:
    r"""The argument parser of every command (each flag with its help)."""
    parser = argparse.ArgumentParser(
        prog='torch-mmkg', description='Multi-modal knowledge graph completion: train, '
        'evaluate, predict and tune models of torch_mmkg.')
    parser.add_argument('--version', action='version', version=f'torch_mmkg {_version()}',
                        help='print the version and exit')
    parser.add_argument('--traceback', action='store_true',
                        help='show the full traceback of an error instead of one line')
    parser.add_argument('--quiet', action='store_true',
                        help='log warnings and errors only (no per-validation lines)')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    p = sub.add_parser('list', help='list the registered components, or show one with its '
                       'arguments and defaults')
    p.add_argument('kind', nargs='?', default=None, choices=sorted(_LISTS),
                   help='what to list (default: every kind, names only)')
    p.add_argument('name', nargs='?', default=None,
                   help='one component: print its arguments, defaults and documentation')
    _add_common(p)

    p = sub.add_parser('train', help='train, select on validation, test')
    p.add_argument('--config', help='a YAML or JSON config file, or the name of a shipped '
                   'config (e.g. native_db15k); flags override it')
    p.add_argument('--dataset', help='a registered dataset name (any case) or the folder of '
                   'your own graph (MMKGFolder)')
    p.add_argument('--model', help='a registered model name (any case); see `list models`')
    p.add_argument('--dim', type=int, dest='hidden_channels', metavar='INT',
                   help='embedding size d (model_args.hidden_channels)')
    p.add_argument('--model-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='a model constructor keyword, VALUE read as YAML (repeatable); see '
                   '`list models NAME`')
    p.add_argument('--dataset-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='a dataset constructor keyword, VALUE read as YAML (repeatable)')
    p.add_argument('--tracker', action='append', default=[], metavar='NAME',
                   help='also track to csv, json, tensorboard, wandb or mlflow (repeatable; '
                   'history.jsonl and metrics.csv are always written to --out)')
    p.add_argument('--root', default=None,
                   help='where registered datasets are processed (default: the config\'s '
                   'root, else the data home $TORCH_MMKG_HOME/datasets)')
    p.add_argument('--out', help='the run directory: config, history, checkpoints, best model '
                   'and results')
    p.add_argument('--resume', nargs='?', const=True, default=False, metavar='RUN',
                   help='continue the run in RUN (or in --out) from its last checkpoint, '
                   'with its saved config; only the options that may change on resume '
                   '(epochs, max-minutes, patience, ...) may be given')
    _add_common(p)
    _add_train_flags(p)

    p = sub.add_parser('evaluate', help='the filtered ranking metrics of a saved run, with '
                       'breakdowns')
    p.add_argument('run', metavar='RUN', help='the run directory')
    p.add_argument('--split', default='test', choices=['test', 'val', 'val_clean', 'train'],
                   help='the split to rank (default: test)')
    p.add_argument('--batch-size', type=int, default=None, metavar='INT',
                   help='queries per batch (default: the run\'s eval_batch_size)')
    p.add_argument('--device', default='cpu', help='where to score (default: cpu)')
    p.add_argument('--root', default=None, help='where the run\'s dataset lives, if it moved')
    p.add_argument('--json', action='store_true',
                   help='print the full result (breakdowns by side, relation category, '
                   'entity completeness) as JSON')
    _add_common(p)

    p = sub.add_parser('predict', help='the top-k completions of (head, relation, ?) or '
                       '(?, relation, tail) by a saved run, with names and scores')
    p.add_argument('run', metavar='RUN', help='the run directory')
    p.add_argument('--head', help='the head entity, by name or id (predicts tails)')
    p.add_argument('--tail', help='the tail entity, by name or id (predicts heads)')
    p.add_argument('--relation', required=True, help='the relation, by name or id')
    p.add_argument('-k', type=int, default=10, help='how many candidates (default: 10)')
    p.add_argument('--filtered', action='store_true',
                   help='leave out candidates that complete a known triple (any split)')
    p.add_argument('--device', default='cpu', help='where to score (default: cpu)')
    p.add_argument('--root', default=None, help='where the run\'s dataset lives, if it moved')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    _add_common(p)

    from torch_mmkg.experiment.tune import add_tune_parser  # imports Optuna only to tune
    _add_common(add_tune_parser(sub))
    return parser


def _pairs(items: List[str], what: str) -> Dict[str, Any]:
    out = {}
    for item in items:
        if '=' not in item:
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r}")
        k, v = item.split('=', 1)
        if not k.strip():
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r}")
        out[k.strip()] = _literal(v.strip())
    return out


def _config_file(value: str) -> str:
    r"""A config path, or the name of a shipped config (:obj:`native_db15k`)."""
    from torch_mmkg.configs import config_path
    if osp.isfile(value):
        return value
    if osp.sep in value or '/' in value:
        return value  # a path: the loader names it as missing
    return config_path(value)


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""Merges the config file and the flags (flags win) into one mapping, with the
    model's canonical name (:obj:`'RotatE'` becomes :obj:`'rotate'`).

    Raises:
        ValueError: for a bad config file, a bad :obj:`KEY=VALUE` argument or an unknown
            model (an :class:`~torch_mmkg.registry.UnknownComponentError` naming the choices
            and the closest one).
    """
    from torch_mmkg.experiment.config import check_sections
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig
    cfg: Dict[str, Any] = {'dataset': None, 'dataset_args': {}, 'model': None,
                           'model_args': {}, 'train': {}}
    if getattr(args, 'config', None):
        path = _config_file(args.config)
        loaded = load_config_file(path)
        check_sections(loaded, path)
        cfg.update({k: v for k, v in loaded.items() if v is not None})
    if getattr(args, 'dataset', None):
        cfg['dataset'] = args.dataset
    if getattr(args, 'model', None):
        cfg['model'] = args.model
    if cfg['model'] is not None:
        cfg['model'] = MODELS.canonical(cfg['model'])
    cfg['dataset_args'] = {**cfg['dataset_args'],
                           **_pairs(getattr(args, 'dataset_arg', []), '--dataset-arg')}
    cfg['model_args'] = {**cfg['model_args'],
                         **_pairs(getattr(args, 'model_arg', []), '--model-arg')}
    if getattr(args, 'hidden_channels', None) is not None:
        cfg['model_args']['hidden_channels'] = args.hidden_channels
    if getattr(args, 'tracker', None):
        cfg['trackers'] = list(cfg.get('trackers') or []) + list(args.tracker)
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            cfg['train'][f.name] = v
    return cfg


def run(cfg: Dict[str, Any], root: Optional[str] = None, out: Optional[str] = None,
        resume: bool = False) -> Dict[str, Any]:
    r"""Trains the config :obj:`cfg` (see :func:`torch_mmkg.experiment.train`)."""
    from torch_mmkg.experiment import train
    if cfg.get('dataset') is None:
        raise ValueError("no dataset: give --dataset or a config with 'dataset'")
    if cfg.get('model') is None:
        raise ValueError("no model: give --model or a config with 'model'")
    return train(cfg, root=root, out=out, resume=resume)


def _configure_logging(quiet: bool):
    r"""Log lines of :obj:`torch_mmkg` on standard error, written so that they do not break a
    progress bar."""
    from tqdm.auto import tqdm

    class TqdmHandler(logging.Handler):
        def emit(self, record):
            try:
                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:  # pragma: no cover - logging must never raise
                self.handleError(record)

    lg = logging.getLogger('torch_mmkg')
    for h in list(lg.handlers):
        if getattr(h, '_torch_mmkg_cli', False):
            lg.removeHandler(h)
    handler = TqdmHandler()
    handler._torch_mmkg_cli = True
    handler.setFormatter(logging.Formatter('%(message)s'))
    lg.addHandler(handler)
    lg.setLevel(logging.WARNING if quiet else logging.INFO)
    lg.propagate = False
    return handler


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line; returns the exit status.

    Bad input (a config, flag, data file or checkpoint that cannot be used) prints one line
    naming the problem to standard error and returns 2; a run that diverges returns 1; a run
    stopped by SIGTERM returns 143 after saying how to resume it. :obj:`--traceback` shows
    the full traceback instead.
    """
    from torch_mmkg.training import TrainingDivergedError, TrainingInterrupted
    args = build_parser().parse_args(argv)
    handler = _configure_logging(getattr(args, 'quiet', False))
    try:
        return _main(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        if args.traceback:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        if args.traceback:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(f"interrupted: {_one_line(e)}", file=sys.stderr)
        return 143
    finally:
        logging.getLogger('torch_mmkg').removeHandler(handler)


def main_entry():  # pragma: no cover - the console script
    sys.exit(main())


def _one_line(e: BaseException) -> str:
    return ' '.join(str(e).split()) or type(e).__name__


def _main(args: argparse.Namespace) -> int:
    if args.command == 'list':
        return _list(args.kind, args.name)
    if args.command == 'evaluate':
        return _evaluate(args)
    if args.command == 'predict':
        return _predict(args)
    if args.command == 'tune':
        from torch_mmkg.experiment.tune import tune_command
        return tune_command(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from torch_mmkg.training.config import RESUMABLE_CHANGES
    resume = args.resume
    if resume is True and not args.out and args.config and osp.isfile(osp.join(
            osp.dirname(osp.abspath(args.config)), 'checkpoint.pt')):
        args.out = osp.dirname(args.config) or '.'  # --config runs/x/config.yaml --resume
    if resume is not False and resume is not True:  # --resume RUN
        if args.out and osp.abspath(args.out) != osp.abspath(resume):
            raise ValueError(f"--resume {resume} and --out {args.out} name two runs; give one")
        args.out = resume
        resume = True
    if resume and not args.config and not args.dataset and not args.model:
        if not args.out:
            raise ValueError("--resume needs the directory of the run to continue "
                             "(--resume RUN or --out RUN)")
        path = saved_config_path(args.out)
        if path is None:
            raise FileNotFoundError(f"{args.out}: no config.yaml of an earlier run to resume")
        saved = load_config_file(path)
        overrides = resolve_config(args)
        extra = {k: v for k, v in overrides.items()
                 if k not in ('train', 'dataset', 'model', 'dataset_args', 'model_args')
                 and v}
        changed = sorted(k for k in overrides['train'] if k not in RESUMABLE_CHANGES)
        if extra or overrides['model_args'] or overrides['dataset_args'] or changed:
            what = changed + sorted(extra) + (['model_args'] if overrides['model_args']
                                              else []) + (
                ['dataset_args'] if overrides['dataset_args'] else [])
            raise ValueError(f"cannot resume {args.out} with changed {', '.join(what)}: only "
                             f"{', '.join(RESUMABLE_CHANGES)} may change on resume")
        saved['train'] = {**saved.get('train', {}), **overrides['train']}
        cfg = saved
    else:
        cfg = resolve_config(args)
    results = run(cfg, root=args.root, out=args.out, resume=bool(resume))
    test = results.get('test')
    summary = {'best_epoch': results['best_epoch'], 'best_val': results['best_val'],
               'seconds_per_epoch_median': results['seconds_per_epoch_median']}
    if test:
        summary['test'] = test['realistic']['both']
    from torch_mmkg.training.distributed import is_main
    if is_main():  # under torchrun, once
        print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from torch_mmkg.experiment import load_run
    run_ = load_run(args.run, device=args.device, root=args.root)
    res = run_.evaluate(args.split, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
        return 0
    print(f"{run_.config['model']} on {osp.basename(str(run_.config['dataset']))}, split "
          f"{args.split} ({res['realistic']['both']['count']} triples), filtered, both sides")
    rows = [('ranks', 'side', 'MRR', 'MR', 'H@1', 'H@3', 'H@10')]
    for rank in ('realistic', 'optimistic'):
        for side in ('both', 'head', 'tail'):
            m = res[rank][side]
            rows.append((rank, side, f"{m['mrr']:.4f}", f"{m['mr']:.1f}", f"{m['hits@1']:.4f}",
                         f"{m['hits@3']:.4f}", f"{m['hits@10']:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for key in ('by_category', 'by_completeness'):  # realistic MRR (queries), both sides
        groups = {k: v.get('both', v) for k, v in (res.get(key) or {}).items()
                  if isinstance(v, dict)}
        shown = [f"{k} {m['mrr']:.4f} ({m['count']})" for k, m in groups.items() if 'mrr' in m]
        if shown:
            print(f"{key.replace('_', ' ')}: {', '.join(shown)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from torch_mmkg.experiment import load_run
    if (args.head is None) == (args.tail is None):
        raise ValueError("give exactly one of --head (to predict tails) and --tail (to "
                         "predict heads)")
    run_ = load_run(args.run, device=args.device, root=args.root)
    pred = run_.predict(head=args.head, relation=args.relation, tail=args.tail, k=args.k,
                        filtered=args.filtered)
    if args.json:
        print(json.dumps(pred.to_dict(), indent=2))
    else:
        print(pred.to_table())
    return 0


def _registries() -> Dict[str, Any]:
    from torch_mmkg.nn import MODELS
    from torch_mmkg.nn.fusion import FUSIONS
    from torch_mmkg.nn.interactions import INTERACTIONS
    from torch_mmkg.nn.loss import LOSSES
    from torch_mmkg.nn.regimes import REGIMES
    from torch_mmkg.transforms import TRANSFORMS
    return {'models': MODELS, 'fusions': FUSIONS, 'interactions': INTERACTIONS,
            'losses': LOSSES, 'regimes': REGIMES, 'transforms': TRANSFORMS}


_LISTS = ('models', 'datasets', 'fusions', 'interactions', 'losses', 'regimes', 'transforms',
          'trackers', 'configs')


def _list(kind: Optional[str], name: Optional[str]) -> int:
    from torch_mmkg.configs import list_configs
    from torch_mmkg.datasets import DATASETS
    from torch_mmkg.training.callbacks import TRACKERS
    regs = _registries()
    table: Dict[str, Any] = dict(regs, datasets=DATASETS, trackers=TRACKERS,
                                 configs={n: None for n in list_configs()})
    if kind is None:
        for k in _LISTS:
            print(f"{k + ':':14}{', '.join(sorted(table[k]))}")
        return 0
    if name is None:
        for n in sorted(table[kind]):
            print(f"{n:24}{_summary_line(table[kind][n])}")
        return 0
    if kind in regs:
        obj = regs[kind][name]  # any case; unknown: the closest name
        key = regs[kind].canonical(name)
    elif kind == 'datasets':
        from torch_mmkg.experiment.data import dataset_name
        key = dataset_name(name)
        obj = DATASETS[key]
    elif kind == 'configs':
        from torch_mmkg.configs import config_path
        with open(config_path(name), encoding='utf-8') as f:
            print(f.read().rstrip())
        return 0
    else:
        if name not in table[kind]:
            raise ValueError(f"unknown {kind[:-1]} {name!r}; choose from {sorted(table[kind])}")
        key, obj = name, table[kind][name]
    print(describe(obj, key))
    return 0


def _summary_line(obj: Any) -> str:
    if obj is None:
        return ''
    doc = (getattr(obj, '__doc__', None) or '').strip().split('\n\n')[0]
    return _plain_text(' '.join(doc.split()))[:100]


def describe(obj: Any, name: str) -> str:
    r"""A component's arguments with their defaults and documentation (the :obj:`Args:` of
    its docstring), for :obj:`torch-mmkg list KIND NAME`."""
    import inspect
    lines = [f"{name}: {getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}",
             _summary_line(obj), '']
    helps = docstring_args(obj)
    fns = []
    if inspect.isclass(obj):
        if hasattr(obj, 'from_data'):
            fns.append(obj.from_data)
            helps = {**docstring_args(obj.from_data), **helps}
        fns.append(obj.__init__)
    elif callable(obj):
        fns.append(obj)
    seen = set()
    lines.append('arguments:')
    for fn in fns:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - builtins
            continue
        for p in params:
            skip = p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            if p.name in ('self', 'cls') or p.name in seen or skip:
                continue
            seen.add(p.name)
            default = 'required' if p.default is p.empty else f'default {p.default!r}'
            lines.append(f"  {p.name} ({default})")
            if p.name in helps:
                lines.append(f"      {helps[p.name].replace('%%', '%')}")
    return '\n'.join(lines)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
