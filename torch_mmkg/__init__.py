r"""torch_mmkg: multi-modal knowledge graph completion for PyTorch Geometric."""
import torch_mmkg.data  # noqa: F401
from torch_mmkg.home import default_root, get_home_dir, set_home_dir


def _version() -> str:
    r"""The installed distribution's version; in a source tree that is not installed, the
    version of the :obj:`pyproject.toml` beside the package."""
    import importlib.metadata
    try:
        return importlib.metadata.version('torch_mmkg')
    except importlib.metadata.PackageNotFoundError:
        pass
    import os.path as osp
    import re
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'pyproject.toml')
    try:
        with open(path, encoding='utf-8') as f:
            project = re.search(r'^\[project\]$(.*?)(?=^\[|\Z)', f.read(), re.M | re.S)
    except OSError:
        return '0+unknown'
    found = project and re.search(r'^version\s*=\s*["\']([^"\']+)["\']', project.group(1), re.M)
    return found.group(1) if found else '0+unknown'


#: The version of :mod:`torch_mmkg` (its installed distribution's, e.g. :obj:`'0.1.0'`).
__version__ = _version()

__all__ = [
    '__version__',
    'get_home_dir',
    'set_home_dir',
    'default_root',
]
