r"""Modality completion (LBMKGC's LvMC): fill a missing modality of entities from the
modalities they have, with a learned cross-modal translator (offline default) or a
generative text-to-image pipeline encoded by CLIP (optional extra)."""
from .base import ModalityCompleter, completed_key, original_mask
from .translator import TranslatorCompleter, completion_cosine
from .generative import DiffusionImageCompleter

__all__ = [
    'ModalityCompleter',
    'TranslatorCompleter',
    'DiffusionImageCompleter',
    'completion_cosine',
    'completed_key',
    'original_mask',
]

