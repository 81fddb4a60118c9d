r"""Models, interactions and losses of :mod:`torch_mmkg`.

A model is a composition (:class:`KGEModel`): an entity representation
(:class:`EntityRepresentation`), a fusion (:mod:`torch_mmkg.nn.fusion`), a relation embedding
and an interaction (:mod:`torch_mmkg.nn.interactions`); the training regime is outside the
model (:mod:`torch_mmkg.nn.regimes`). Each method is a preset of it.
"""
from . import fusion, interactions, loss, regimes  # noqa: F401
from .alignment import CrossModalAlignment
from .club import CLUBEstimator
from .fusion import (AdaptiveFusion, AttentionFusion, ConcatFusion, ContextGatedFusion,
                     MeanFusion, ModalityExperts, ModalityProjection, ProductFusion, SumFusion)
from .interactions import (Interaction, TransEInteraction, DistMultInteraction,
                           ComplExInteraction, RotatEInteraction, PairREInteraction,
                           TuckERInteraction, MultiViewInteraction, EnsembleInteraction)
from .kge import (KGEModel, EmbeddingKGEModel, FeatureMismatchWarning, TransE, DistMult,
                  ComplEx, RotatE, PairRE, TuckER)
from .models import NATIVE, TBKGC, MoMoK, LBMKGC, VBKGC
from .models import LiteralE, KBLN
from .models import IKRL, QEB
from .interactions import WeightedMultiViewInteraction
from .models import TransAE, MMKRL
from .models import AdaMF
from .models import IMF, MoSE, MoSEEnsemble
from .models import VISTA, MyGO
from .fusion import MutanFusion
from .models import RSME, OTKGE
from .models import MKGformer
from .fusion import WeightedSumFusion
from .interactions import GatedSimilarityComplExInteraction
from .models._modalities import FromDataMixin
from .representation import EntityRepresentation, ExpertRepresentation
from .regimes import REGIMES, NegativeSampling, OneToN
from .sampling import KBGAN, MANS, MMRNS
from .loss import (LOSSES, SelfAdversarialLoss, MarginRankingLoss, SoftplusLoss, BCELoss,
                   SoftmaxCrossEntropyLoss, symmetric_contrastive_loss, l2_regularization,
                   n3_regularization)

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
MODELS.register('literale', LiteralE)
MODELS.register('kbln', KBLN)
MODELS.register('ikrl', IKRL)
MODELS.register('qeb', QEB)
MODELS.register('transae', TransAE)
MODELS.register('mmkrl', MMKRL)
MODELS.register('adamf', AdaMF)
MODELS.register('imf', IMF)
MODELS.register('mose', MoSE)
MODELS.register('vista', VISTA)
MODELS.register('mygo', MyGO)
MODELS.register('rsme', RSME)
MODELS.register('otkge', OTKGE)
MODELS.register('mkgformer', MKGformer)

#: The negative-sampling regimes that choose or build their negatives
#: (:mod:`torch_mmkg.nn.sampling`).
REGIMES.register('kbgan', KBGAN)
REGIMES.register('mans', MANS)
REGIMES.register('mmrns', MMRNS)

__all__ = [
    'EntityRepresentation',
    'ExpertRepresentation',
    'FromDataMixin',
    'ContextGatedFusion',
    'SumFusion',
    'MultiViewInteraction',
    'WeightedMultiViewInteraction',
    'EnsembleInteraction',
    'NegativeSampling',
    'OneToN',
    'REGIMES',
    'KBGAN',
    'MANS',
    'MMRNS',
    'LOSSES',
    'SoftmaxCrossEntropyLoss',
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
    'LiteralE',
    'KBLN',
    'IKRL',
    'QEB',
    'TransAE',
    'MMKRL',
    'AdaMF',
    'IMF',
    'MoSE',
    'MoSEEnsemble',
    'VISTA',
    'MyGO',
    'MutanFusion',
    'RSME',
    'OTKGE',
    'WeightedSumFusion',
    'MKGformer',
    'GatedSimilarityComplExInteraction',
    'SelfAdversarialLoss',
    'MarginRankingLoss',
    'SoftplusLoss',
    'BCELoss',
    'symmetric_contrastive_loss',
    'l2_regularization',
    'n3_regularization',
    'MODELS',
]
