r"""Multi-modal knowledge graph completion models."""
from .native import NATIVE
from .tbkgc import TBKGC
from .momok import MoMoK
from .lbmkgc import LBMKGC
from .vbkgc import VBKGC
from .literale import LiteralE
from .kbln import KBLN
from .ikrl import IKRL
from .qeb import QEB
from .transae import TransAE
from .mmkrl import MMKRL
from .imf import IMF
from .mose import MoSE, MoSEEnsemble
from .adamf import AdaMF
from .vista import VISTA
from .mygo import MyGO
from .rsme import RSME
from .otkge import OTKGE
from .mkgformer import MKGformer

__all__ = [
    'NATIVE',
    'TBKGC',
    'MoMoK',
    'LBMKGC',
    'VBKGC',
    'LiteralE',
    'KBLN',
    'IKRL',
    'QEB',
    'TransAE',
    'MMKRL',
    'AdaMF',
    'IMF',
    'MoSE',
    'MoSEEnsemble',
    'VISTA',
    'MyGO',
    'RSME',
    'OTKGE',
    'MKGformer',
]
