r"""Interpretability analyses of trained :mod:`torch_mmkg` models."""
from .relation_weights import RelationModalityWeights, relation_modality_weights

__all__ = [
    'relation_modality_weights',
    'RelationModalityWeights',
]
