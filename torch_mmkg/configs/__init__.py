r"""The shipped example configs: the authors' settings of each method on each dataset, one YAML
file per :obj:`<model>_<dataset>` (also reachable as :obj:`examples/configs/` in a clone).

They travel in the wheel as package data, so that an installed :mod:`torch_mmkg` finds them::

    from torch_mmkg.configs import config_path, list_configs
    list_configs()                 # ['adamf_db15k', ..., 'vista_mkgw']
    config_path('native_db15k')    # '/.../torch_mmkg/configs/native_db15k.yaml'
"""
import difflib
import os
import os.path as osp
from typing import List

__all__ = ['CONFIG_DIR', 'UnknownConfigError', 'list_configs', 'config_path']

#: The folder of the shipped configs.
CONFIG_DIR = osp.dirname(osp.abspath(__file__))

_SUFFIX = '.yaml'


class UnknownConfigError(FileNotFoundError):
    r"""A name that no shipped config has (a :class:`FileNotFoundError`); the message lists
    the close names."""


def list_configs() -> List[str]:
    r"""The names of the shipped configs, sorted, without the :obj:`.yaml` suffix.

    Returns:
        List[str]: e.g. :obj:`['adamf_db15k', ..., 'vista_mkgw']`.
    """
    return sorted(f[:-len(_SUFFIX)] for f in os.listdir(CONFIG_DIR)
                  if f.endswith(_SUFFIX) and not f.startswith('.'))


def config_path(name: str) -> str:
    r"""The absolute path of a shipped config.

    Args:
        name (str): The config's name, with or without the :obj:`.yaml` suffix (e.g.
            :obj:`"native_db15k"` or :obj:`"native_db15k.yaml"`); case does not matter.

    Returns:
        str: The absolute path of the YAML file.

    Raises:
        TypeError: If :obj:`name` is not a string.
        ValueError: If :obj:`name` is a path rather than a name.
        UnknownConfigError: If no shipped config has that name; the message lists the
            close names (or all of them when none is close).
    """
    if not isinstance(name, str):
        raise TypeError(f"config_path: name must be a string, got {type(name).__name__} "
                        f"{name!r}")
    if '/' in name or os.sep in name:
        raise ValueError(f"config_path takes the name of a shipped config (see "
                         f"list_configs()), got the path {name!r}; open a file of your own "
                         f"directly")
    stem = name[:-len(_SUFFIX)] if name.lower().endswith(_SUFFIX) else name
    names = list_configs()
    by_key = {n.casefold(): n for n in names}
    if stem.casefold() in by_key:
        return osp.join(CONFIG_DIR, by_key[stem.casefold()] + _SUFFIX)
    close = difflib.get_close_matches(stem.casefold(), list(by_key), n=5, cutoff=0.6)
    if close:
        hint = f"close names: {', '.join(by_key[c] for c in close)}"
    else:
        hint = f"shipped configs: {', '.join(names)}"
    raise UnknownConfigError(f"no shipped config named {name!r} ({hint})")
