r"""The command line: train and evaluate any registered model on any registered dataset.

.. code-block:: bash

    python -m torch_mmkg list
    python -m torch_mmkg train --dataset MKG-W --model rotate --dim 250 --epochs 200 \
        --lr 2e-3 --num-negatives 32 --model-arg margin=9 --out runs/rotate_mkgw
    python -m torch_mmkg train --config configs/rotate_mkgw.yaml --epochs 10   # flags win
    python -m torch_mmkg train --config runs/rotate_mkgw/config.yaml --resume

A YAML config has the keys :obj:`dataset`, :obj:`dataset_args`, :obj:`model`,
:obj:`model_args` (constructor keywords, :obj:`hidden_channels` included) and :obj:`train`
(fields of :class:`~torch_mmkg.training.TrainConfig`); every training field is also a flag
(:obj:`--num-negatives`, :obj:`--max-minutes`, ...). The resolved config is saved as
:obj:`<out>/config.yaml` (JSON if PyYAML is missing) next to :obj:`results.json`.

Model names, like the :obj:`regime`, :obj:`optimizer` and :obj:`sampling` options, are
case-insensitive and ignore :obj:`'-'` and :obj:`'_'` (:obj:`--model RotatE` is
:obj:`rotate`); the saved config holds the canonical names.
"""
import argparse
import ast
import dataclasses
import json
import os.path as osp
import re
import sys
import typing
from typing import Any, Dict, List, Optional

__all__ = ['main', 'build_parser', 'resolve_config', 'run', 'load_config_file']


def _yaml_loader():
    r"""PyYAML's safe loader with two fixes: numbers in exponent notation without a decimal
    point (``1e-3``) are floats, as in YAML 1.2 and JSON (YAML 1.1 reads them as strings), and
    a key repeated in a mapping is an error instead of silently replacing the first."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    float_re = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                          |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                          |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)
    Loader.add_implicit_resolver('tag:yaml.org,2002:float', float_re,
                                 list('-+0123456789.'))

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           lambda loader, node: mapping(loader, node))
    return Loader


def load_config_file(path: str) -> Dict[str, Any]:
    r"""Reads a YAML or JSON (:obj:`.json`) config file into a mapping, without running code
    (PyYAML's safe loader; ``1e-3`` is a float as in YAML 1.2).

    Raises:
        FileNotFoundError: if :obj:`path` does not exist.
        ValueError: naming the file (and line and column for a syntax error), for a syntax
            error, a duplicate key, or a document that is not a mapping.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if path.endswith('.json'):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    else:
        try:
            import yaml
        except ImportError as e:  # pragma: no cover - pyyaml is in the test extra
            raise ImportError(f"reading {path} needs PyYAML (pip install pyyaml)") from e
        try:
            out = yaml.load(text, Loader=_yaml_loader())
        except yaml.YAMLError as e:
            mark = getattr(e, 'problem_mark', None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            problem = getattr(e, 'problem', None) or str(e)
            context = getattr(e, 'context', None)
            raise ValueError(f"{where}: invalid YAML: {problem}"
                             f"{f' ({context})' if context else ''}") from None
        if out is None:
            out = {}
    if not isinstance(out, dict):
        raise ValueError(f"{path}: the config must be a mapping, got {type(out).__name__}")
    return out


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _mapping(value: str) -> Dict[str, Any]:
    out = _literal(value)
    if not isinstance(out, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as "
                                         f"\"{{'adversarial_weight': 1e-4}}\" or {{}}, got "
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


def build_parser() -> argparse.ArgumentParser:
    from torch_mmkg.training import TrainConfig
    parser = argparse.ArgumentParser(prog='python -m torch_mmkg',
                                     description='Multi-modal knowledge graph completion.')
    parser.add_argument('--traceback', action='store_true',
                        help='show the full traceback of an error instead of one line')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help='list the registered models and datasets')
    p = sub.add_parser('train', help='train, select on validation, test')
    p.add_argument('--config', help='YAML or JSON file (flags override it)')
    p.add_argument('--dataset', help='a registered dataset name')
    p.add_argument('--model', help='a registered model name')
    p.add_argument('--dim', type=int, dest='hidden_channels', help='embedding size d')
    p.add_argument('--model-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='a model constructor keyword (repeatable)')
    p.add_argument('--dataset-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='a dataset constructor keyword (repeatable)')
    p.add_argument('--root', default=osp.join('data'), help='datasets root (default: data)')
    p.add_argument('--out', help='output directory for checkpoints and results')
    p.add_argument('--resume', action='store_true', help='continue from <out>/checkpoint.pt')
    p.add_argument('--traceback', action='store_true', default=argparse.SUPPRESS,
                   help='show the full traceback of an error instead of one line')
    for f in dataclasses.fields(TrainConfig):
        flag = '--' + f.name.replace('_', '-')
        tp = _field_type(f)
        if tp is bool:
            p.add_argument(flag, dest=f.name, default=None, type=_boolean,
                           metavar='{true,false}')
        elif typing.get_origin(tp) is dict or tp is dict:
            p.add_argument(flag, dest=f.name, default=None, type=_mapping,
                           metavar="'{KEY: VALUE, ...}'")
        else:
            p.add_argument(flag, dest=f.name, type=tp, default=None)
    return parser


def _pairs(items: List[str], what: str) -> Dict[str, Any]:
    out = {}
    for item in items:
        if '=' not in item:
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r}")
        k, v = item.split('=', 1)
        out[k.strip()] = _literal(v.strip())
    return out


#: The sections of a config, and the type each must have.
SECTIONS = {'dataset': str, 'dataset_args': dict, 'model': str, 'model_args': dict,
            'train': dict}
#: The sections a resumed run must share with the run it continues (the training options
#: are checked by :meth:`~torch_mmkg.training.Trainer.load_checkpoint`).
RUN_IDENTITY = ('dataset', 'dataset_args', 'model', 'model_args')


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""Merges the config file and the flags (flags win) into one mapping, with the
    model's canonical name (:obj:`'RotatE'` becomes :obj:`'rotate'`).

    Raises:
        ValueError: for a bad config file, a bad :obj:`KEY=VALUE` argument or an unknown
            model (an :class:`~torch_mmkg.registry.UnknownComponentError` naming the choices
            and the closest one).
    """
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig
    cfg: Dict[str, Any] = {'dataset': None, 'dataset_args': {}, 'model': None,
                           'model_args': {}, 'train': {}}
    if args.config:
        loaded = load_config_file(args.config)
        unknown = sorted(set(loaded) - set(cfg))
        if unknown:
            raise ValueError(f"{args.config}: unknown keys {unknown}; expected {sorted(cfg)}")
        for key, value in loaded.items():
            if value is not None and not isinstance(value, SECTIONS[key]):
                kind = 'a name' if SECTIONS[key] is str else 'a mapping'
                raise ValueError(f"{args.config}: '{key}' must be {kind}, got "
                                 f"{type(value).__name__} {value!r}")
        cfg.update({k: v for k, v in loaded.items() if v is not None})
    if args.dataset:
        cfg['dataset'] = args.dataset
    if args.model:
        cfg['model'] = args.model
    if cfg['model'] is not None:
        cfg['model'] = MODELS.canonical(cfg['model'])
    cfg['dataset_args'] = {**cfg['dataset_args'], **_pairs(args.dataset_arg, '--dataset-arg')}
    cfg['model_args'] = {**cfg['model_args'], **_pairs(args.model_arg, '--model-arg')}
    if args.hidden_channels is not None:
        cfg['model_args']['hidden_channels'] = args.hidden_channels
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            cfg['train'][f.name] = v
    return cfg


def _saved_config_path(out: str) -> Optional[str]:
    for name in ('config.yaml', 'config.json'):
        if osp.isfile(osp.join(out, name)):
            return osp.join(out, name)
    return None


def _check_run_directory(cfg: Dict[str, Any], out: Optional[str], resume: bool):
    if not resume:
        if out and osp.exists(osp.join(out, 'checkpoint.pt')):
            raise ValueError(f"{out} holds the checkpoint of an earlier run; pass --resume to "
                             f"continue it, or choose another --out")
        return
    if not out:
        raise ValueError("--resume needs --out, the directory of the run to continue")
    path = _saved_config_path(out)
    if path is None:
        raise FileNotFoundError(f"{out}: no config.yaml of an earlier run to resume")
    saved = load_config_file(path)
    changed = [f"{key}: {saved.get(key)!r} in {path}, {cfg.get(key)!r} now"
               for key in RUN_IDENTITY if (saved.get(key) or None) != (cfg.get(key) or None)]
    if changed:
        raise ValueError(f"cannot resume {out} with another dataset or model ("
                         f"{'; '.join(changed)}); start a new run with another --out")


def run(cfg: Dict[str, Any], root: str = 'data', out: Optional[str] = None,
        resume: bool = False) -> Dict[str, Any]:
    r"""Builds the dataset, model and trainer of a resolved config and trains.

    Model names and the names among the training options may be spelt in any case or as
    aliases; the config saved in :obj:`out` holds the canonical names.

    Raises:
        ValueError: for an unknown dataset or model, bad arguments, a run directory that
            holds another run's checkpoint (without :obj:`resume`), or a resumed run whose
            dataset, model or training options differ from the interrupted one.
    """
    from torch_mmkg.datasets import DATASETS
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig, Trainer, seed_everything
    if cfg.get('dataset') not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.get('dataset')!r}; choose from "
                         f"{sorted(DATASETS)}")
    cfg = {**cfg, 'model': MODELS.canonical(cfg.get('model'))}  # unknown: ValueError
    train_cfg = TrainConfig.from_dict(cfg['train'])
    cfg['train'] = {key: getattr(train_cfg, key) for key in cfg['train']}  # canonical names
    _check_run_directory(cfg, out, resume)
    seed_everything(train_cfg.seed)
    try:
        dataset = DATASETS[cfg['dataset']](osp.join(root, cfg['dataset']),
                                           **cfg['dataset_args'])
    except TypeError as e:
        raise ValueError(f"bad dataset_args for {cfg['dataset']}: {e}") from None
    data = dataset[0]
    model = build_model(cfg, data, dataset)
    trainer = Trainer(model, data, train_cfg, out_dir=out)
    if out and not resume:
        _save_config(cfg, out)
    return trainer.fit(resume=resume)


def build_model(cfg: Dict[str, Any], data, dataset=None):
    r"""The model of a resolved config (:obj:`cfg['model']`, :obj:`cfg['model_args']`) for the
    graph :obj:`data`: multi-modal models take their features from it.

    Args:
        cfg (dict): The config (:func:`resolve_config` or a config file's mapping).
        data (HeteroData): The graph.
        dataset (optional): The dataset :obj:`data` came from, for its hint of what to supply
            when the config names modalities the graph lacks. (default: :obj:`None`)

    Raises:
        ValueError: for an unknown model, bad :obj:`model_args`, or modalities the graph
            lacks.
    """
    from torch_mmkg.data import ENTITY
    from torch_mmkg.nn import MODELS
    cfg = {**cfg, 'model': MODELS.canonical(cfg.get('model'))}
    model_args = dict(cfg.get('model_args') or {})
    dim = model_args.pop('hidden_channels', 200)
    cls = MODELS[cfg['model']]
    multimodal = hasattr(cls, 'from_data')
    if multimodal:
        _check_modalities(cfg, dataset, data, model_args.get('modalities'))
    try:  # multi-modal models take their features from the graph
        model = (cls.from_data(data, dim, **model_args) if multimodal else
                 cls(data[ENTITY].num_nodes, data.num_relations, dim, **model_args))
    except TypeError as e:
        raise ValueError(f"bad model_args for {cfg['model']}: {e}") from None
    except ValueError as e:
        from torch_mmkg.data.mmkg import get_modalities
        if not multimodal or get_modalities(data) or not hasattr(dataset, 'modality_hint'):
            raise
        raise ValueError(f"{cfg['model']} on {cfg.get('dataset')}: {e}; the graph has no "
                         f"modality. {dataset.modality_hint(_author_modalities(dataset))}"
                         ) from None
    return model


def _author_modalities(dataset) -> List[str]:
    r"""The modalities of the authors' feature files of a dataset (image and text if it
    does not say)."""
    return list(getattr(dataset, 'author_modalities', ()) or ('image', 'text'))


def _check_modalities(cfg: Dict[str, Any], dataset, data, wanted: Optional[List[str]]):
    r"""Raises a :class:`ValueError` saying what to supply when the config names modalities
    (:obj:`model_args.modalities`) that the dataset did not build."""
    from torch_mmkg.data.mmkg import get_modalities
    if wanted is None:
        return
    if isinstance(wanted, str) or not isinstance(wanted, (list, tuple)):
        raise ValueError(f"model_args.modalities must be a list of modality names, got "
                         f"{wanted!r}")
    have = get_modalities(data)
    missing = [m for m in wanted if m not in have]
    if not missing:
        return
    hint = dataset.modality_hint(missing) if hasattr(dataset, 'modality_hint') else ''
    raise ValueError(f"{cfg['model']} on {cfg.get('dataset')} needs the modalities {missing}, "
                     f"which the graph lacks (it has {have or 'none'}). {hint}".rstrip())


def _save_config(cfg: Dict[str, Any], out: str):
    try:
        import yaml
        with open(osp.join(out, 'config.yaml'), 'w') as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
    except ImportError:  # pragma: no cover
        with open(osp.join(out, 'config.json'), 'w') as f:
            json.dump(cfg, f, indent=2)


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line; returns the exit status.

    Bad input (a config, flag, data file or checkpoint that cannot be used) prints one line
    naming the problem to standard error and returns 2; a run that diverges returns 1.
    :obj:`--traceback` shows the full traceback instead.
    """
    from torch_mmkg.training import TrainingDivergedError
    args = build_parser().parse_args(argv)
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


def _one_line(e: BaseException) -> str:
    return ' '.join(str(e).split()) or type(e).__name__


def _main(args: argparse.Namespace) -> int:
    if args.command == 'list':
        from torch_mmkg.datasets import DATASETS
        from torch_mmkg.nn import MODELS
        print('models:  ', ', '.join(sorted(MODELS)))
        print('datasets:', ', '.join(sorted(DATASETS)))
        return 0
    cfg = resolve_config(args)
    results = run(cfg, root=args.root, out=args.out, resume=args.resume)
    test = results.get('test')
    summary = {'best_epoch': results['best_epoch'], 'best_val': results['best_val'],
               'seconds_per_epoch_median': results['seconds_per_epoch_median']}
    if test:
        summary['test'] = test['realistic']['both']
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
