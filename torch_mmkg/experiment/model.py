r"""The model of an experiment config, and the constructor arguments it was built with."""
import inspect
from typing import Any, Dict, List, Optional

__all__ = ['build_model', 'model_arguments']


#: The embedding size when a config gives no :obj:`hidden_channels`.
DEFAULT_DIM = 200


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
    dim = model_args.pop('hidden_channels', DEFAULT_DIM)
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


def model_arguments(cfg: Dict[str, Any]) -> Dict[str, Any]:
    r"""Every constructor argument of the model of :obj:`cfg`, the defaults included, as the
    registered class declares them (:meth:`from_data` for multi-modal models, whose features
    come from the graph): what a run directory records in :obj:`model.json`.

    Returns:
        dict: :obj:`name` (canonical), :obj:`class` (module and qualified name) and
        :obj:`arguments` (:obj:`hidden_channels` and every keyword, given or default; values
        that are not plain data are shown by their :func:`repr`).
    """
    from torch_mmkg.nn import MODELS
    name = MODELS.canonical(cfg.get('model'))
    cls = MODELS[name]
    given = dict(cfg.get('model_args') or {})
    given.setdefault('hidden_channels', DEFAULT_DIM)
    fns = ([cls.from_data] if hasattr(cls, 'from_data') else []) + [cls.__init__]
    params = [p for fn in fns for p in inspect.signature(fn).parameters.values()]
    out: Dict[str, Any] = {}
    for p in params:
        pname = p.name
        if pname in out:
            continue
        if pname in ('self', 'cls', 'data', 'num_nodes', 'num_relations') or p.kind in (
                p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if pname in given:
            out[pname] = given[pname]
        elif p.default is not p.empty:
            out[pname] = p.default
    out.update({k: v for k, v in given.items() if k not in out})  # **kwargs of from_data
    return {'name': name, 'class': f'{cls.__module__}.{cls.__qualname__}',
            'arguments': {k: _plain(v) for k, v in out.items()}}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)
