r"""Built datasets as single files, for a machine that cannot build them (no mirror, no
sentence encoder): a GPU machine that receives the repository and at most a few tens of MB.

    TORCH_MMKG_MIRROR=../shared/mirror python benchmark/graphs.py --datasets MKG-W DB15K \
        --root data --out .devdata

writes ``.devdata/MKG-W.pt`` and ``.devdata/DB15K.pt``; :func:`load_graph` reads one back as
the :class:`~torch_geometric.data.HeteroData` the dataset class gives, exactly (every tensor
bit for bit). Feature tables that are mostly zeros (DB15K's numeric attributes) are stored as
their non-zero entries. The file is read with
:func:`~torch_mmkg.data.serialization.safe_load`: it cannot run code.
"""
import argparse
import os
import os.path as osp
from typing import Any, Dict

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.serialization import UnsafeFileError, atomic_torch_save, safe_load

FORMAT = 'torch_mmkg.benchmark.graph/1'
#: Floating tables with at most this fraction of non-zeros are stored sparse.
SPARSE_DENSITY = 0.25


def _pack(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, Tensor) and value.is_floating_point() and value.dim() == 2:
        kept = (value != 0) | value.signbit()  # -0.0 is kept: the round trip is bit for bit
        if value.numel() == 0 or kept.sum().item() > SPARSE_DENSITY * value.numel():
            return value
        index = kept.nonzero().t().contiguous()
        return {'__sparse__': True, 'index': index.to(torch.int32), 'values': value[tuple(index)],
                'shape': list(value.shape)}
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict) and value.get('__sparse__') is True:
        out = torch.zeros(value['shape'], dtype=value['values'].dtype)
        out[tuple(value['index'].long())] = value['values']
        return out
    if isinstance(value, dict):
        return {k: _unpack(v) for k, v in value.items()}
    return value


def save_graph(data: HeteroData, path: str) -> None:
    r"""Writes :obj:`data` to :obj:`path` (sparse where a feature table is mostly zeros)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_torch_save({'format': FORMAT, 'data': _pack(data.to_dict())}, path)


def load_graph(path: str) -> HeteroData:
    r"""Reads a file of :func:`save_graph`.

    Raises:
        UnsafeFileError: naming :obj:`path`, if it is not such a file.
    """
    obj = safe_load(path, 'exported graph')
    if not isinstance(obj, dict) or obj.get('format') != FORMAT:
        raise UnsafeFileError(f"{path}: not a graph written by benchmark/graphs.py (format "
                              f"{obj.get('format') if isinstance(obj, dict) else None!r}, "
                              f"expected {FORMAT!r})")
    return HeteroData.from_dict(_unpack(obj['data']))


def build(name: str, root: str) -> HeteroData:
    r"""The graph of the registered dataset :obj:`name`, built (or loaded) under
    ``root/name``."""
    from torch_mmkg.datasets import DATASETS
    return DATASETS[name](osp.join(root, name))[0]


def main(argv=None) -> Dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--datasets', nargs='+', required=True)
    parser.add_argument('--root', default='data')
    parser.add_argument('--out', default='.devdata')
    args = parser.parse_args(argv)
    written = {}
    for name in args.datasets:
        path = osp.join(args.out, f'{name}.pt')
        save_graph(build(name, args.root), path)
        written[name] = path
        print(f'{name}: {path} ({osp.getsize(path) / 2**20:.1f} MiB)')
    return written


if __name__ == '__main__':
    main()
