r"""Downloads of raw files pinned to a commit, with an offline mirror.

Every raw file of :mod:`torch_mmkg.datasets` is a file of a public GitHub repository at a fixed
commit, downloaded from ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>``.
Set the environment variable :obj:`TORCH_MMKG_MIRROR` to replace the URL base:

* a local directory (or ``file://`` URL) laid out as ``<owner>/<repo>/<commit>/<path>``: files
  are copied from there and nothing touches the network;
* another base URL (``http://`` or ``https://``), e.g. an institutional mirror.
"""
import os
import os.path as osp
import shutil
from dataclasses import dataclass

from torch_geometric.data import download_url

MIRROR_ENV = 'TORCH_MMKG_MIRROR'
DEFAULT_BASE = 'https://raw.githubusercontent.com'


@dataclass(frozen=True)
class RawFile:
    r"""A raw file of a public repository at a pinned commit.

    Args:
        owner (str): Repository owner.
        repo (str): Repository name.
        commit (str): Full commit hash.
        path (str): Path of the file inside the repository.
        name (str, optional): File name in the dataset's raw folder (default: the base name of
            :obj:`path`).
    """
    owner: str
    repo: str
    commit: str
    path: str
    name: str = ''

    @property
    def local_name(self) -> str:
        return self.name or osp.basename(self.path)

    @property
    def rel_path(self) -> str:
        return f'{self.owner}/{self.repo}/{self.commit}/{self.path}'

    @property
    def url(self) -> str:
        return f'{DEFAULT_BASE}/{self.rel_path}'


def mirror_base() -> str:
    r"""The URL base or mirror directory in force (:obj:`TORCH_MMKG_MIRROR`, else GitHub)."""
    return os.getenv(MIRROR_ENV, '') or DEFAULT_BASE


def fetch(raw: RawFile, folder: str, log: bool = True) -> str:
    r"""Puts :obj:`raw` into :obj:`folder` (downloading it, or copying it from a local mirror)
    and returns its local path."""
    os.makedirs(folder, exist_ok=True)
    dst = osp.join(folder, raw.local_name)
    base = mirror_base().rstrip('/')
    if base.startswith('file://'):
        base = base[len('file://'):]
    if base.startswith(('http://', 'https://')):
        return download_url(f'{base}/{raw.rel_path}', folder, log=log, filename=raw.local_name)
    src = osp.join(base, *raw.rel_path.split('/'))
    if not osp.isfile(src):
        raise FileNotFoundError(f"{MIRROR_ENV}={mirror_base()!r} is a local mirror, but it has "
                                f"no file {src} (expected layout <owner>/<repo>/<commit>/<path>)")
    if log:
        print(f'Copying {src}', flush=True)
    shutil.copyfile(src, dst)
    return dst
