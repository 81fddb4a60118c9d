r"""A reusable training routine with validation-based model selection and exact resume."""
from .config import TrainConfig
from .comat import CoMAT
from .mat import MAT
from .adversarial import ModalityAdversary
from .trainer import (Trainer, NonFiniteLossError, TrainingDivergedError, model_signature,
                      resolve_device, seed_everything)

__all__ = [
    'TrainConfig',
    'CoMAT',
    'MAT',
    'ModalityAdversary',
    'Trainer',
    'NonFiniteLossError',
    'TrainingDivergedError',
    'model_signature',
    'resolve_device',
    'seed_everything',
]
