r"""Interpretability analyses of trained :mod:`torch_mmkg` models."""
from .relation_weights import RelationModalityWeights, relation_modality_weights
from .momok import ExpertWeights, ScorerComparison, expert_weights, scorer_comparison
from .plots import (EntityModalityWeights, RobustnessCurve, TrainingCurves,
                    entity_modality_weights, plot_expert_weights, plot_robustness_curves,
                    plot_training_curves, robustness_curve, training_curves)

__all__ = [
    'relation_modality_weights',
    'RelationModalityWeights',
    'expert_weights',
    'ExpertWeights',
    'scorer_comparison',
    'ScorerComparison',
    'plot_expert_weights',
    'entity_modality_weights',
    'EntityModalityWeights',
    'robustness_curve',
    'RobustnessCurve',
    'plot_robustness_curves',
    'training_curves',
    'TrainingCurves',
    'plot_training_curves',
]
