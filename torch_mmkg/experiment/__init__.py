r"""The experiment layer: configs, run directories, evaluation and prediction of saved runs,
hyper-parameter search."""
from .config import load_config_file, save_config
from .data import build_data, data_fingerprint
from .model import build_model, model_arguments
from .run import Run, load_run, resolve, stop_on_signals, train
from .predict import Prediction, predict_target

__all__ = [
    'load_config_file',
    'save_config',
    'build_data',
    'data_fingerprint',
    'build_model',
    'model_arguments',
    'train',
    'resolve',
    'load_run',
    'Run',
    'stop_on_signals',
    'predict_target',
    'Prediction',
]
