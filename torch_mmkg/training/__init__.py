r"""A reusable training routine with validation-based model selection and exact resume."""
from .config import TrainConfig
from .comat import CoMAT
from .trainer import (Trainer, NonFiniteLossError, TrainingDivergedError, model_signature,
                      resolve_device, seed_everything)

__all__ = [
    'TrainConfig',
    'CoMAT',
    'Trainer',
    'NonFiniteLossError',
    'TrainingDivergedError',
    'model_signature',
    'resolve_device',
    'seed_everything',
]
