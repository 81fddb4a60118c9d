r"""The data home of :mod:`torch_mmkg`, in the style of :func:`torch_geometric.get_home_dir`:
one folder per machine where datasets are downloaded, processed and encoded once, whatever the
working directory.

The home is, in this order: the folder given to :func:`set_home_dir`, the environment variable
:obj:`$TORCH_MMKG_HOME`, or :obj:`"~/.cache/torch_mmkg"`. Datasets live in its
:obj:`datasets` sub-folder (:func:`default_root`), the default :obj:`root` of the command line.
"""
import os
import os.path as osp
from typing import Optional, Union

__all__ = ['ENV_TORCH_MMKG_HOME', 'DEFAULT_HOME_DIR', 'get_home_dir', 'set_home_dir',
           'default_root']

#: The environment variable that sets the data home.
ENV_TORCH_MMKG_HOME = 'TORCH_MMKG_HOME'

#: The data home when neither :func:`set_home_dir` nor :obj:`$TORCH_MMKG_HOME` says otherwise.
DEFAULT_HOME_DIR = osp.join('~', '.cache', 'torch_mmkg')

_home_dir: Optional[str] = None


def get_home_dir() -> str:
    r"""The folder where :mod:`torch_mmkg` keeps its data.

    If :func:`set_home_dir` was not called, the path is given by the environment variable
    :obj:`$TORCH_MMKG_HOME` (an empty value counts as unset), which defaults to
    :obj:`"~/.cache/torch_mmkg"`. A leading :obj:`~` is expanded; the folder is not created.

    Returns:
        str: The data home.
    """
    if _home_dir is not None:
        return osp.expanduser(_home_dir)
    return osp.expanduser(os.getenv(ENV_TORCH_MMKG_HOME) or DEFAULT_HOME_DIR)


def set_home_dir(path: Optional[Union[str, os.PathLike]]) -> None:
    r"""Sets the folder where :mod:`torch_mmkg` keeps its data, for this process; it wins
    over :obj:`$TORCH_MMKG_HOME`.

    Args:
        path (str or os.PathLike, optional): The path to a local folder; :obj:`None` goes
            back to the environment variable and the default.

    Raises:
        TypeError: If :obj:`path` is neither a path nor :obj:`None`.
        ValueError: If :obj:`path` is empty.
    """
    global _home_dir
    if path is None:
        _home_dir = None
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"set_home_dir: path must be a str or os.PathLike (or None), got "
                        f"{type(path).__name__} {path!r}")
    path = os.fspath(path)
    if not path:
        raise ValueError("set_home_dir: path must not be empty (None resets to "
                         f"${ENV_TORCH_MMKG_HOME} or {DEFAULT_HOME_DIR})")
    _home_dir = path


def default_root() -> str:
    r"""The default :obj:`root` of datasets: the :obj:`datasets` sub-folder of the data home
    (:func:`get_home_dir`), so that each dataset is downloaded and processed once per machine.

    Returns:
        str: :obj:`<home>/datasets`.
    """
    return osp.join(get_home_dir(), 'datasets')
