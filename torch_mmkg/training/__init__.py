r"""A reusable training routine with validation-based model selection and exact resume."""
from .config import TrainConfig
from .trainer import Trainer, NonFiniteLossError, resolve_device, seed_everything

__all__ = [
    'TrainConfig',
    'Trainer',
    'NonFiniteLossError',
    'resolve_device',
    'seed_everything',
]
