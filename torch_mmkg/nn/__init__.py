r"""Models, interactions and losses of :mod:`torch_mmkg`."""
from . import fusion, interactions, kernels, loss  # noqa: F401
from .alignment import CrossModalAlignment
from .club import CLUBEstimator
from .fusion import (AdaptiveFusion, AttentionFusion, ConcatFusion, MeanFusion,
                     ModalityExperts, ModalityProjection, ProductFusion)
from .interactions import (Interaction, TransEInteraction, DistMultInteraction,
                           ComplExInteraction, RotatEInteraction, PairREInteraction,
                           TuckERInteraction)
from .kge import (KGEModel, EmbeddingKGEModel, FeatureMismatchWarning, TransE, DistMult, ComplEx, RotatE, PairRE,
                  TuckER)
from .models import NATIVE, TBKGC, MoMoK, LBMKGC, VBKGC
from .loss import (SelfAdversarialLoss, MarginRankingLoss, SoftplusLoss, BCELoss,
                   symmetric_contrastive_loss, l2_regularization, n3_regularization)

from ..registry import Registry

#: The models the command line and the trainer know by name (case-insensitive, see
#: :class:`~torch_mmkg.registry.Registry`).
MODELS = Registry('model')
MODELS.register('transe', TransE)
MODELS.register('distmult', DistMult)
MODELS.register('complex', ComplEx)
MODELS.register('rotate', RotatE)
MODELS.register('pairre', PairRE)
MODELS.register('tucker', TuckER)
MODELS.register('native', NATIVE)
MODELS.register('tbkgc', TBKGC)
MODELS.register('momok', MoMoK)
MODELS.register('lbmkgc', LBMKGC)
MODELS.register('vbkgc', VBKGC)

__all__ = [
    'AdaptiveFusion',
    'MeanFusion',
    'ConcatFusion',
    'ProductFusion',
    'AttentionFusion',
    'ModalityExperts',
    'ModalityProjection',
    'CLUBEstimator',
    'CrossModalAlignment',
    'Interaction',
    'TransEInteraction',
    'DistMultInteraction',
    'ComplExInteraction',
    'RotatEInteraction',
    'PairREInteraction',
    'TuckERInteraction',
    'KGEModel',
    'FeatureMismatchWarning',
    'EmbeddingKGEModel',
    'TransE',
    'DistMult',
    'ComplEx',
    'RotatE',
    'PairRE',
    'TuckER',
    'NATIVE',
    'TBKGC',
    'MoMoK',
    'LBMKGC',
    'VBKGC',
    'SelfAdversarialLoss',
    'MarginRankingLoss',
    'SoftplusLoss',
    'BCELoss',
    'symmetric_contrastive_loss',
    'l2_regularization',
    'n3_regularization',
    'MODELS',
]
