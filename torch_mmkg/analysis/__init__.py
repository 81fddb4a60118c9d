r"""Interpretability analyses of trained :mod:`torch_mmkg` models."""
from .relation_weights import RelationModalityWeights, relation_modality_weights
from .momok import ExpertWeights, ScorerComparison, expert_weights, scorer_comparison

__all__ = [
    'relation_modality_weights',
    'RelationModalityWeights',
    'expert_weights',
    'ExpertWeights',
    'scorer_comparison',
    'ScorerComparison',
]
