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

#: The models the command line and the trainer know by name.
MODELS = {
    'transe': TransE,
    'distmult': DistMult,
    'complex': ComplEx,
    'rotate': RotatE,
    'pairre': PairRE,
    'tucker': TuckER,
    'native': NATIVE,
    'tbkgc': TBKGC,
    'momok': MoMoK,
    'lbmkgc': LBMKGC,
    'vbkgc': VBKGC,
}

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
