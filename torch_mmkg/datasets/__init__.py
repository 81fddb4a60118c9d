r"""Multi-modal knowledge graph datasets."""
from .download import (MIRROR_ENV, ChecksumError, DownloadError, RawFile,
                       UnpinnedFileError, fetch)
from .base import MMKGDataset
from .wildkgc import WildKGC, MKGW, MKGY, DB15K, KVC16K, TIVA
from .wn9_img import WN9IMG
from .fake import FakeMMKGDataset
from .folder import MMKGFolder

#: The datasets the command line and the trainer know by name.
DATASETS = {
    'MKG-W': MKGW,
    'MKG-Y': MKGY,
    'DB15K': DB15K,
    'KVC16K': KVC16K,
    'TIVA': TIVA,
    'WN9-IMG': WN9IMG,
}

__all__ = [
    'DATASETS',
    'MIRROR_ENV',
    'RawFile',
    'fetch',
    'ChecksumError',
    'DownloadError',
    'UnpinnedFileError',
    'MMKGDataset',
    'WildKGC',
    'MKGW',
    'MKGY',
    'DB15K',
    'KVC16K',
    'TIVA',
    'WN9IMG',
    'FakeMMKGDataset',
    'MMKGFolder',
]
