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
"""
import argparse
import ast
import dataclasses
import json
import os
import os.path as osp
import sys
import typing
from typing import Any, Dict, List, Optional

__all__ = ['main', 'build_parser', 'resolve_config', 'run']


def _load_mapping(path: str) -> Dict[str, Any]:
    with open(path) as f:
        text = f.read()
    if path.endswith('.json'):
        return json.loads(text)
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is in the test extra
        raise ImportError(f"reading {path} needs PyYAML (pip install pyyaml)") from e
    out = yaml.safe_load(text) or {}
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


def _field_type(f: dataclasses.Field):
    tp = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing))
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def build_parser() -> argparse.ArgumentParser:
    from torch_mmkg.training import TrainConfig
    parser = argparse.ArgumentParser(prog='python -m torch_mmkg',
                                     description='Multi-modal knowledge graph completion.')
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
    for f in dataclasses.fields(TrainConfig):
        flag = '--' + f.name.replace('_', '-')
        tp = _field_type(f)
        if tp is bool:
            p.add_argument(flag, dest=f.name, default=None,
                           type=lambda v: str(v).lower() in ('1', 'true', 'yes'),
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
            raise SystemExit(f"{what} expects KEY=VALUE, got {item!r}")
        k, v = item.split('=', 1)
        out[k.strip()] = _literal(v.strip())
    return out


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""Merges the config file and the flags (flags win) into one mapping."""
    from torch_mmkg.training import TrainConfig
    cfg: Dict[str, Any] = {'dataset': None, 'dataset_args': {}, 'model': None,
                           'model_args': {}, 'train': {}}
    if args.config:
        loaded = _load_mapping(args.config)
        unknown = sorted(set(loaded) - set(cfg))
        if unknown:
            raise SystemExit(f"{args.config}: unknown keys {unknown}; expected {sorted(cfg)}")
        cfg.update({k: v for k, v in loaded.items() if v is not None})
    if args.dataset:
        cfg['dataset'] = args.dataset
    if args.model:
        cfg['model'] = args.model
    cfg['dataset_args'] = {**cfg['dataset_args'], **_pairs(args.dataset_arg, '--dataset-arg')}
    cfg['model_args'] = {**cfg['model_args'], **_pairs(args.model_arg, '--model-arg')}
    if args.hidden_channels is not None:
        cfg['model_args']['hidden_channels'] = args.hidden_channels
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            cfg['train'][f.name] = v
    return cfg


def run(cfg: Dict[str, Any], root: str = 'data', out: Optional[str] = None,
        resume: bool = False) -> Dict[str, Any]:
    r"""Builds the dataset, model and trainer of a resolved config and trains."""
    from torch_mmkg.data import ENTITY
    from torch_mmkg.datasets import DATASETS
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig, Trainer, seed_everything
    if cfg.get('dataset') not in DATASETS:
        raise SystemExit(f"unknown dataset {cfg.get('dataset')!r}; choose from "
                         f"{sorted(DATASETS)}")
    if cfg.get('model') not in MODELS:
        raise SystemExit(f"unknown model {cfg.get('model')!r}; choose from {sorted(MODELS)}")
    train_cfg = TrainConfig.from_dict(cfg['train'])
    seed_everything(train_cfg.seed)
    dataset = DATASETS[cfg['dataset']](osp.join(root, cfg['dataset']), **cfg['dataset_args'])
    data = dataset[0]
    model_args = dict(cfg['model_args'])
    dim = model_args.pop('hidden_channels', 200)
    cls = MODELS[cfg['model']]
    try:  # multi-modal models take their features from the graph
        model = (cls.from_data(data, dim, **model_args) if hasattr(cls, 'from_data') else
                 cls(data[ENTITY].num_nodes, data.num_relations, dim, **model_args))
    except TypeError as e:
        raise SystemExit(f"bad model_args for {cfg['model']}: {e}") from e
    if out:
        os.makedirs(out, exist_ok=True)
        _save_config(cfg, out)
    trainer = Trainer(model, data, train_cfg, out_dir=out)
    return trainer.fit(resume=resume)


def _save_config(cfg: Dict[str, Any], out: str):
    try:
        import yaml
        with open(osp.join(out, 'config.yaml'), 'w') as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
    except ImportError:  # pragma: no cover
        with open(osp.join(out, 'config.json'), 'w') as f:
            json.dump(cfg, f, indent=2)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
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
