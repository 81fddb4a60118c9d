r"""Modality completion (LBMKGC's LvMC): fill a missing modality of entities from the
modalities they have, with a learned cross-modal translator (offline default) or a
generative text-to-image pipeline encoded by CLIP (optional extra)."""
from .base import ModalityCompleter, completed_key, original_mask
from .translator import TranslatorCompleter, completion_cosine
from .generative import DiffusionImageCompleter
from torch_mmkg.registry import Registry

#: The completers known by name (case-insensitive), as the :obj:`completer:` of a
#: :class:`~torch_mmkg.transforms.CompleteModality` entry of an experiment config names them:
#: :obj:`"translator"` (:class:`TranslatorCompleter`) and :obj:`"diffusion"`
#: (:meth:`DiffusionImageCompleter.from_pretrained`, from local model folders).
COMPLETERS = Registry('completer')
COMPLETERS.register('translator', TranslatorCompleter, aliases=('TranslatorCompleter', ))
COMPLETERS.register('diffusion', DiffusionImageCompleter.from_pretrained,
                    aliases=('generative', 'DiffusionImageCompleter'))

__all__ = [
    'ModalityCompleter',
    'TranslatorCompleter',
    'DiffusionImageCompleter',
    'completion_cosine',
    'completed_key',
    'original_mask',
    'COMPLETERS',
]
