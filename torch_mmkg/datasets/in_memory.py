r"""PyG's :class:`~torch_geometric.data.InMemoryDataset` with a processed folder that cannot run
code.

PyG reads ``processed/pre_transform.pt`` and ``pre_filter.pt`` with :obj:`weights_only=False`
and retries the processed cache itself unsafely when its safe load fails, so a pickle planted in
a dataset root runs on the next load. :class:`SafeInMemoryDataset` reads every file of
``processed/`` through :func:`~torch_mmkg.data.serialization.safe_load` and writes its cache as
tensors and plain containers only (no class references), atomically.
"""
import os
import os.path as osp
import sys
import warnings
from typing import Sequence, Type

from torch_geometric.data import HeteroData, InMemoryDataset
from torch_geometric.data.data import BaseData
from torch_geometric.data.dataset import _repr, files_exist

from torch_mmkg.data.serialization import UnsafeFileError, atomic_torch_save, safe_load

__all__ = ['SafeInMemoryDataset']

#: Marks a processed file written by :class:`SafeInMemoryDataset`.
CACHE_FORMAT = 'torch_mmkg.processed/1'


class SafeInMemoryDataset(InMemoryDataset):
    r"""An :class:`~torch_geometric.data.InMemoryDataset` whose processed files are written as
    tensors and plain Python data and read with
    :func:`~torch_mmkg.data.serialization.safe_load`: nothing a dataset root holds can run
    code. A processed file that is not in this format, or a record of the pre-transform that is
    not a string, is an error naming the file (delete it, or pass :obj:`force_reload=True`)."""

    @classmethod
    def save(cls, data_list: Sequence[BaseData], path: str) -> None:
        r"""Saves a list of data objects to :obj:`path` (plain containers only, atomically)."""
        data, slices = cls.collate(data_list)
        atomic_torch_save({'format': CACHE_FORMAT, 'data': data.to_dict(), 'slices': slices},
                          path)

    def load(self, path: str, data_cls: Type[BaseData] = HeteroData) -> None:
        r"""Loads the dataset from :obj:`path`, refusing anything but a file written by
        :meth:`save`."""
        obj = safe_load(path, 'processed dataset')
        if not isinstance(obj, dict) or obj.get('format') != CACHE_FORMAT:
            raise UnsafeFileError(f"{path}: not a processed dataset written by this version of "
                                  f"torch_mmkg; delete it (or pass force_reload=True) and it is "
                                  f"rebuilt from the raw files")
        self.data = data_cls.from_dict(obj['data'])
        self.slices = obj['slices']

    def _process(self):
        # PyG's Dataset._process, with the records of pre_transform/pre_filter read safely.
        records = {'pre_transform': self.pre_transform, 'pre_filter': self.pre_filter}
        for name, value in records.items():
            path = osp.join(self.processed_dir, f'{name}.pt')
            if self.force_reload or not osp.exists(path):
                continue
            stored = safe_load(path, f'record of the {name}')
            if not isinstance(stored, str):
                raise UnsafeFileError(f"{path}: expected the text of the {name} the cache was "
                                      f"built with, found {type(stored).__name__}")
            if stored != _repr(value):
                warnings.warn(f"The `{name}` argument differs from the one used in the "
                              f"processed version of this dataset ({stored}); pass "
                              f"`force_reload=True` to process it again", stacklevel=3)
        if not self.force_reload and files_exist(self.processed_paths):
            return
        if self.log and 'PYTEST_CURRENT_TEST' not in os.environ:
            print('Processing...', file=sys.stderr)
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()
        for name, value in records.items():
            atomic_torch_save(_repr(value), osp.join(self.processed_dir, f'{name}.pt'))
        if self.log and 'PYTEST_CURRENT_TEST' not in os.environ:
            print('Done!', file=sys.stderr)
