r"""Experiment configs: the mapping behind :obj:`torch-mmkg train --config`, read safely from
YAML or JSON, merged with the command line's flags and saved, resolved, in a run directory.

A config has the sections :obj:`dataset` (a registered name or a folder), :obj:`dataset_args`,
:obj:`model`, :obj:`model_args` (constructor keywords, :obj:`hidden_channels` included),
:obj:`train` (the fields of :class:`~torch_mmkg.training.TrainConfig`) and, optionally,
:obj:`root` (where registered datasets are processed), :obj:`transforms`,
:obj:`entity_texts` and :obj:`trackers`.
"""
import json
import os.path as osp
import re
from typing import Any, Dict

__all__ = ['load_config_file', 'save_config', 'SECTIONS', 'RUN_IDENTITY', 'check_sections']


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


#: The sections of a config, and the type each must have.
SECTIONS = {'dataset': str, 'dataset_args': dict, 'model': str, 'model_args': dict,
            'train': dict, 'root': str, 'transforms': list, 'entity_texts': dict,
            'trackers': list,
            'search': dict}  # torch-mmkg tune's search space (torch_mmkg.experiment.tune)
#: The sections a resumed run must share with the run it continues (the training options
#: are checked by :meth:`~torch_mmkg.training.Trainer.load_checkpoint`).
RUN_IDENTITY = ('dataset', 'dataset_args', 'model', 'model_args', 'transforms',
                'entity_texts')


def check_sections(loaded: Dict[str, Any], where: str):
    r"""Raises a :class:`ValueError` naming :obj:`where` for an unknown section or a section
    of the wrong type."""
    unknown = sorted(set(loaded) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected {sorted(SECTIONS)}")
    kinds = {str: 'a name', dict: 'a mapping', list: 'a list'}
    for key, value in loaded.items():
        if value is not None and not isinstance(value, SECTIONS[key]):
            raise ValueError(f"{where}: '{key}' must be {kinds[SECTIONS[key]]}, got "
                             f"{type(value).__name__} {value!r}")


def save_config(cfg: Dict[str, Any], path: str):
    r"""Writes :obj:`cfg` as YAML (JSON if PyYAML is missing or :obj:`path` ends in
    :obj:`.json`), readable by :func:`load_config_file`."""
    if not path.endswith('.json'):
        try:
            import yaml
        except ImportError:  # pragma: no cover
            path = osp.splitext(path)[0] + '.json'
        else:
            with open(path, 'w', encoding='utf-8') as f:
                yaml.safe_dump(cfg, f, sort_keys=False)
            return path
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(cfg, f, indent=2)
    return path


def saved_config_path(out: str):
    r"""The config file of the run directory :obj:`out`, or :obj:`None`."""
    for name in ('config.yaml', 'config.json'):
        if osp.isfile(osp.join(out, name)):
            return osp.join(out, name)
    return None
