r"""Mini-batch loaders and negative samplers for training knowledge graph embeddings."""
from .negative_sampler import Negatives, NegativeSampler, relation_head_probability
from .triple_loader import TripleBatch, TripleLoader, OneToNBatch, OneToNLoader

__all__ = [
    'Negatives',
    'NegativeSampler',
    'relation_head_probability',
    'TripleBatch',
    'TripleLoader',
    'OneToNBatch',
    'OneToNLoader',
]
