r"""Negative-sampling regimes that choose or build their negatives: generative (KBGAN),
modality-aware (MANS) and relation-enhanced (MMRNS). Each is a
:class:`~torch_mmkg.nn.regimes.TrainingRegime` of :data:`~torch_mmkg.nn.regimes.REGIMES`
that trains any model; KBGAN and MMRNS own trainable parts (a generator, a cross-modal
attention), stepped with the model's by one optimiser (see :mod:`torch_mmkg.nn.regimes`)."""
from .kbgan import KBGAN, KBGAN_BASELINES
from .mans import MANS, MANS_MODES
from .mmrns import MMRNS, KnowledgeGuidedCrossModalAttention, gumbel_top_k

__all__ = ['KBGAN', 'KBGAN_BASELINES', 'MANS', 'MANS_MODES', 'MMRNS',
           'KnowledgeGuidedCrossModalAttention', 'gumbel_top_k']
