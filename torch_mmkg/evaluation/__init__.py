r"""Filtered link-prediction evaluation: ranks, metrics and breakdowns."""
from .ranking import RANK_TYPES, filtered_ranks, realistic, rank_metrics
from .categories import CATEGORIES, relation_categories
from .evaluator import (COMPLETENESS, RankingEvaluator, RankingResult,
                        entity_completeness)
from .reference import AnswerFrequency

__all__ = [
    'RANK_TYPES',
    'filtered_ranks',
    'realistic',
    'rank_metrics',
    'CATEGORIES',
    'relation_categories',
    'COMPLETENESS',
    'RankingEvaluator',
    'RankingResult',
    'entity_completeness',
    'AnswerFrequency',
]
