r"""A reusable training routine with validation-based model selection and exact resume."""
from .config import TrainConfig
from .comat import CoMAT
from .mat import MAT
from .mmkrl_adversary import MMKRLAdversary
from .adversarial import ModalityAdversary
from .trainer import (Trainer, NonFiniteLossError, TrainingDivergedError, TrainingInterrupted,
                      model_signature, resolve_device, seed_everything)
from .callbacks import (Callback, CallbackList, CSVTracker, JSONTracker, TensorBoardTracker,
                        WandbTracker, MLflowTracker, build_tracker)

__all__ = [
    'TrainConfig',
    'CoMAT',
    'MAT',
    'MMKRLAdversary',
    'ModalityAdversary',
    'Trainer',
    'NonFiniteLossError',
    'TrainingDivergedError',
    'TrainingInterrupted',
    'Callback',
    'CallbackList',
    'CSVTracker',
    'JSONTracker',
    'TensorBoardTracker',
    'WandbTracker',
    'MLflowTracker',
    'build_tracker',
    'model_signature',
    'resolve_device',
    'seed_everything',
]
