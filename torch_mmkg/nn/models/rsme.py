import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.fusion.projection import ModalityProjection
from torch_mmkg.nn.fusion.weighted import WeightedSumFusion
from torch_mmkg.nn.interactions.rsme import GatedSimilarityComplExInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import SoftmaxCrossEntropyLoss
from torch_mmkg.data.feature_store import is_disk_features
from torch_mmkg.nn.representation import STRUCTURE, EntityRepresentation, register_modalities
from torch_mmkg.nn.validation import check_sizes, choice, real
from ._modalities import FromDataMixin, features_from_data

__all__ = ['RSME', 'RSMERepresentation', 'mean_rank_percentile', 'mrp_forget_gate',
           'filter_gate', 'SIMILARITY']

#: The name of RSME's similarity slot (the unit feature blocks of the cosine term).
SIMILARITY = 'similarity'


def _normal_init(scale: float):
    def init(weight: Tensor):
        with torch.no_grad():
            torch.nn.init.normal_(weight)
            weight.mul_(scale)
    return init


class RSMERepresentation(EntityRepresentation):
    r"""RSME's entity representation, laid out for its fusion and score: a structural
    complex embedding :math:`\mathbf{e}_s \in \mathbb{C}^d` (slot 0), per modality :math:`m`
    the projection :math:`\mathbf{x}_m \mathbf{W}_m \in \mathbb{C}^d` (one linear map,
    slot :math:`m`), and a last slot holding the unit-normalised features
    :math:`\hat{\mathbf{x}}_m = \mathbf{x}_m / \|\mathbf{x}_m\|` (raw, or with
    :obj:`similarity="projected"` of the projections :math:`\mathbf{x}_m\mathbf{W}_m`) that
    the cosine term of :class:`~torch_mmkg.nn.interactions.GatedSimilarityComplExInteraction`
    reads. Every slot is a row of width :math:`C + \sum_m F_m`: the complex part
    (:math:`C = 2d`; with :obj:`combine="concat"`, :math:`C = 2d(1 + M)`, each slot's real
    and imaginary halves placed in its own block, so that the sum of the slots is the
    concatenation :math:`[\mathrm{Re}\,\mathbf{e}_s, \mathrm{Re}\,\mathbf{x}_1\mathbf{W}_1,
    \ldots \| \mathrm{Im}\,\mathbf{e}_s, \ldots]`), then the feature blocks, zero except in
    the similarity slot. A :class:`~torch_mmkg.nn.fusion.WeightedSumFusion` of the stack is
    then the joint entity.

    A missing modality (with :obj:`mask_missing`) has mask False in its slot and a zero
    feature block (its cosine is 0); without, the stored (zero) rows are used as they are.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The real width :math:`2d` of a complex embedding.
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F_m]`.
        masks (Mapping[str, Tensor], optional): Per modality, :obj:`[N]`.
        combine (str, optional): :obj:`"mix"` or :obj:`"concat"`. (default: :obj:`"mix"`)
        similarity (str, optional): :obj:`"raw"` or :obj:`"projected"`.
            (default: :obj:`"raw"`)
        projection_bias (bool, optional): (default: :obj:`False`)
        trainable_features (bool, optional): (default: :obj:`False`)
        mask_missing (bool, optional): (default: :obj:`True`)
        init_scale (float, optional): Structural (and relation) entries
            :math:`\mathcal{N}(0, 1)` times it; :obj:`None` for Xavier-uniform.
            (default: :obj:`1e-3`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all if :obj:`None`)
        - **output:** stack :math:`[*, M + 2, C + \sum_m F_m]`, mask :math:`[*, M + 2]`
    """
    def __init__(self, num_nodes: int, channels: int, features: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]] = None, combine: str = 'mix',
                 similarity: str = 'raw', projection_bias: bool = False,
                 trainable_features: bool = False, mask_missing: bool = True,
                 init_scale: Optional[float] = 1e-3):
        torch.nn.Module.__init__(self)
        self.num_nodes = int(num_nodes)
        if not features:
            raise ValueError("RSME needs at least one modality (ComplEx has none)")
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              (STRUCTURE, SIMILARITY),
                                              bool(trainable_features))
        self.combine, self.similarity = combine, similarity
        self.mask_missing = bool(mask_missing)
        self.projection_bias = bool(projection_bias)
        self.init = (_normal_init(init_scale) if init_scale is not None
                     else torch.nn.init.xavier_uniform_)
        self.complex_width = int(channels)
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        self.projection = ModalityProjection({m: x.size(1) for m, x in features.items()},
                                             channels, num_layers=1, bias=projection_bias)
        M = len(self.modalities)
        self.joint_complex_width = channels * (1 + M) if combine == 'concat' else channels
        self.similarity_widths = [channels if similarity == 'projected' else x.size(1)
                                  for x in features.values()]
        self.channels = self.joint_complex_width + sum(self.similarity_widths)

    @property
    def slots(self) -> List[str]:
        return [STRUCTURE] + list(self.modalities) + [SIMILARITY]

    @property
    def costly(self) -> bool:
        return True

    def reset_encoders(self):
        self.projection.reset_parameters()
        if not self.projection_bias:  # the authors' post_mats: Xavier-uniform, no bias
            for mlp in self.projection.mlps.values():
                torch.nn.init.xavier_uniform_(mlp[0].weight)

    def _place(self, x: Tensor, block: int) -> Tensor:
        r"""A complex vector :math:`[*, 2d]` at its block of a row of the stack."""
        C, W = self.joint_complex_width, self.channels
        if self.combine == 'mix':
            return F.pad(x, (0, W - C))
        d, M1 = self.complex_width // 2, C // self.complex_width
        re, im = x[..., :d], x[..., d:]
        return F.pad(torch.cat([F.pad(re, (block * d, (M1 - 1 - block) * d)),
                                F.pad(im, (block * d, (M1 - 1 - block) * d))], dim=-1),
                     (0, W - C))

    def present(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""Which entities have :obj:`modality` (all, without :obj:`mask_missing`)."""
        mask = self.mask(modality, index)
        return mask if self.mask_missing else torch.ones_like(mask)

    def unit_features(self, index: Optional[Tensor] = None,
                      encoded: Optional[Dict[str, Tensor]] = None) -> List[Tensor]:
        r"""Per modality, :math:`\hat{\mathbf{x}}_m` :math:`[*, F_m]` (zero where missing)."""
        out = []
        for m in self.modalities:
            x = encoded[m] if self.similarity == 'projected' else self.features(m, index)
            x = F.normalize(x, dim=-1)
            out.append(torch.where(self.present(m, index)[..., None], x, x.new_zeros(())))
        return out

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        s = self.structural(index)
        enc = self.encode(index)
        slots = [self._place(s, 0)]
        for k, m in enumerate(self.modalities):
            slots.append(self._place(enc[m], k + 1))
        unit = torch.cat(self.unit_features(index, enc), dim=-1)
        slots.append(F.pad(unit, (self.joint_complex_width, 0)))
        ones = torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)
        masks = [ones] + [self.present(m, index) for m in self.modalities] + [ones]
        return torch.stack(slots, dim=-2), torch.stack(masks, dim=-1)

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.complex_width}, modalities={self.modalities}, '
                f'combine={self.combine!r}, similarity={self.similarity!r}')


class RSME(FromDataMixin, KGEModel):
    r"""The RSME model from the `"Is Visual Context Really Helpful for Knowledge Graph? A
    Representation Learning Perspective" <https://doi.org/10.1145/3474085.3475470>`_ paper
    (ACM MM 2021), for any number of modalities (the paper has one, images).

    **Entities** mix a structural complex embedding with the projected image feature,

    .. math::
        \hat{\mathbf{e}} = (1 - \alpha_r)\, \mathbf{e}_s + \alpha_r\, \mathbf{x}_{img}
        \mathbf{W}, \qquad \mathbf{e}_s, \mathbf{x}_{img}\mathbf{W} \in \mathbb{C}^d,

    with :math:`\alpha` a constant (the authors' :obj:`constant=True`, 0.7) or one value per
    relation (their update gate, given as a tensor). With :math:`M` modalities each gets
    :math:`\alpha_r / M`.

    **Score**: ComplEx of the mixed entities plus the gated cosine similarity of the raw
    image features,

    .. math::
        f(h, r, t) = \beta\, \mathrm{Re}\big(\langle \hat{\mathbf{h}}, \mathbf{r},
        \overline{\hat{\mathbf{t}}} \rangle\big) + (1 - \beta)\,
        \cos(\mathbf{x}^h_{img}, \mathbf{x}^t_{img})\, g_r,

    (:class:`~torch_mmkg.nn.interactions.GatedSimilarityComplExInteraction`; :math:`M`
    modalities share :math:`1 - \beta` equally), trained 1-N with reciprocal relations
    (:math:`g_{r+R} = g_r`, :math:`\alpha_{r+R} = \alpha_r`), softmax cross-entropy and the
    N3 penalty on the scored query entity and relation.

    **Forget gate** :math:`g_r \in \{0, 1\}`: whether relation :math:`r` keeps the image
    term, decided from the training triples by the mean rank percentile (MRP) of the true
    tails among candidate tails ranked by image similarity (:func:`mrp_forget_gate`;
    :meth:`from_data` computes it by default). **Filter gate**: with several images per
    entity, :func:`filter_gate` keeps the one most similar to the others (cosine instead of
    the authors' pHash, which needs the raw images).

    **As a composition**: :class:`RSMERepresentation` (the stack :math:`[\mathbf{e}_s,
    \mathbf{x}_m\mathbf{W}_m, \hat{\mathbf{x}}]`), a
    :class:`~torch_mmkg.nn.fusion.WeightedSumFusion` (weights :math:`[1-\alpha_r,
    \alpha_r/M, \ldots, 1]`, relation-dependent when :math:`\alpha` is per relation; a
    missing image's weight goes to :math:`\mathbf{e}_s`), relations :math:`[\mathbf{r}
    \,\|\, g_r]` and the gated-similarity ComplEx interaction.

    **Where sources differ** (switches; defaults follow the paper, or the authors' code
    where the paper is silent):

    * :obj:`beta`: :obj:`config.py` sets 0.5 (default), a comment and zjukg's version 0.95.
    * :obj:`train_similarity`: the authors' code trains on the ComplEx logits alone and
      adds the image term only when ranking (:obj:`False`: training mode scores ComplEx
      alone, evaluation mode the whole score); the paper's score is the model's score
      (:obj:`True`, default).
    * The re-implementation behind the NATIVE tables (zjukg's ``RSME.py``):
      :obj:`combine="concat"` (the projection concatenated to the complex parts,
      :math:`[\mathrm{Re}\,\mathbf{e}_s, \mathrm{Re}\,\mathbf{p} \| \mathrm{Im}\,\mathbf{e}_s,
      \mathrm{Im}\,\mathbf{p}]`, relations of complex width :math:`2d`),
      :obj:`similarity="projected"` (the cosine of the projections), :obj:`beta=0.95`,
      :obj:`projection_bias=True`, :obj:`init_scale=None` (Xavier), no forget gate
      (:obj:`from_data(..., forget_gate="none")`), negative-sampling training.

    Not reproduced: the per-relation :math:`\alpha` of the authors' update gate is read
    from a pickle whose construction is not in their code (pass a tensor); the authors'
    N3 also penalises the true tail and their 1-N loop is one example per triple (the
    library's 1-N regime groups a query's answers); their non-constant :math:`\alpha`
    branch detaches the scores (it trains nothing).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The complex rank :math:`d` (the authors' 1,000).
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` availability.
            (default: all present)
        alpha (float or Tensor, optional): :math:`\alpha \in [0, 1]`, or an :obj:`[R]`
            tensor of them. (default: :obj:`0.7`)
        beta (float, optional): :math:`\beta \in [0, 1]`. (default: :obj:`0.5`)
        forget_gate (Tensor, optional): :math:`g`, :obj:`[R]` or :obj:`[R, M]`
            (default: all ones, no gate; see :meth:`from_data`)
        combine (str, optional): :obj:`"mix"` (the paper) or :obj:`"concat"` (zjukg).
            (default: :obj:`"mix"`)
        similarity (str, optional): :obj:`"raw"` (the paper) or :obj:`"projected"`
            (zjukg). (default: :obj:`"raw"`)
        train_similarity (bool, optional): (default: :obj:`True`)
        projection_bias (bool, optional): :math:`\mathbf{x}\mathbf{W} + \mathbf{b}`
            (zjukg). (default: :obj:`False`)
        trainable_features (bool, optional): Fine-tune the feature tables.
            (default: :obj:`False`)
        init_scale (float, optional): Entity and relation entries :math:`\mathcal{N}(0, 1)`
            times it (the authors' :obj:`init` 1e-3); :obj:`None` for Xavier-uniform
            (zjukg). (default: :obj:`1e-3`)
        mask_missing (bool, optional): A missing modality's weight goes to
            :math:`\mathbf{e}_s` and its cosine is 0; :obj:`False` uses the stored (zero)
            rows like the authors (:math:`\hat{\mathbf{e}} = (1-\alpha)\mathbf{e}_s` then).
            (default: :obj:`True`)
        regularization (str, optional): (default: :obj:`"n3"`)
        regularization_weight (float, optional): (default: :obj:`0.0`, :obj:`learn.py`'s
            :obj:`--reg` default)
        regularize (str, optional): Of :class:`~torch_mmkg.nn.KGEModel`.
            (default: :obj:`"scored"`)
        loss (torch.nn.Module, optional): (default:
            :class:`~torch_mmkg.nn.loss.SoftmaxCrossEntropyLoss`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 alpha: Union[float, Tensor] = 0.7, beta: float = 0.5,
                 forget_gate: Optional[Tensor] = None, combine: str = 'mix',
                 similarity: str = 'raw', train_similarity: bool = True,
                 projection_bias: bool = False, trainable_features: bool = False,
                 init_scale: Optional[float] = 1e-3, mask_missing: bool = True,
                 regularization: Optional[str] = 'n3', regularization_weight: float = 0.0,
                 regularize: str = 'scored', loss: Optional[torch.nn.Module] = None):
        N, R, d = check_sizes(self, num_nodes, num_relations, hidden_channels)
        beta = real(self, 'beta', beta, 0.0, 1.0)
        choice(self, 'combine', combine, ('mix', 'concat'))
        choice(self, 'similarity', similarity, ('raw', 'projected'))
        for name, value in (('train_similarity', train_similarity),
                            ('projection_bias', projection_bias),
                            ('trainable_features', trainable_features),
                            ('mask_missing', mask_missing)):
            choice(self, name, value, (True, False))
        if init_scale is not None:
            init_scale = real(self, 'init_scale', init_scale, 0.0, low_open=True)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use ComplEx "
                             f"without any)")
        M = len(features)
        alpha = self._check_alpha(alpha, R)
        gate = self._check_gate(forget_gate, R, M)
        representation = RSMERepresentation(N, 2 * d, features, masks, combine, similarity,
                                            projection_bias, trainable_features, mask_missing,
                                            init_scale)
        S = M + 2
        if combine == 'concat':
            weights = torch.ones(S)
        else:
            a = alpha if alpha.dim() else alpha.view(1)
            weights = torch.cat([(1 - a)[:, None], (a / M)[:, None].expand(-1, M),
                                 torch.ones(a.numel(), 1)], dim=1)
            weights = torch.cat([weights, weights]) if alpha.dim() else weights[0]
        fusion = WeightedSumFusion(representation.channels, weights, mask_missing=mask_missing,
                                   missing='drop' if combine == 'concat' else 'structure')
        C = representation.joint_complex_width
        interaction = GatedSimilarityComplExInteraction(C, representation.similarity_widths,
                                                        beta, train_similarity)
        super().__init__(N, R, d, interaction, loss or SoftmaxCrossEntropyLoss(),
                         inverse_relations=True, regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation, fusion=fusion, regularize=regularize,
                         relation_embedding=False)
        self.rel_emb = torch.nn.Embedding(2 * R, C)
        self.register_buffer('forget_gate', torch.cat([gate, gate]))
        self.alpha = alpha if alpha.dim() else float(alpha)
        self.beta = beta
        self.combine, self.similarity = combine, similarity
        self.train_similarity = bool(train_similarity)
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    def _check_alpha(self, alpha, R: int) -> Tensor:
        if isinstance(alpha, Tensor) and alpha.numel() != 1:
            if alpha.shape != (R, ) or not alpha.is_floating_point() or not bool(
                    ((alpha >= 0) & (alpha <= 1)).all()):
                raise ValueError(f"{type(self).__name__}: alpha must be a number in [0, 1] or "
                                 f"an [{R}] float tensor of them, got {alpha.dtype} "
                                 f"{tuple(alpha.shape)}")
            return alpha.detach().float().cpu()
        return torch.tensor(real(self, 'alpha', alpha, 0.0, 1.0))

    def _check_gate(self, gate, R: int, M: int) -> Tensor:
        if gate is None:
            return torch.ones(R, M)
        if (not isinstance(gate, Tensor) or not gate.is_floating_point()
                or gate.shape not in ((R, ), (R, M)) or not bool(torch.isfinite(gate).all())):
            raise ValueError(f"{type(self).__name__}: forget_gate must be a finite float "
                             f"[{R}] or [{R}, {M}] tensor (one value per relation, or per "
                             f"relation and modality), got "
                             f"{getattr(gate, 'dtype', type(gate).__name__)} "
                             f"{tuple(getattr(gate, 'shape', ()))}")
        gate = gate.detach().float().cpu()
        return gate.view(R, 1).expand(R, M).clone() if gate.dim() == 1 else gate.clone()

    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None,
                  forget_gate: Union[str, Tensor, None] = 'mrp', mrp_threshold: float = 0.1,
                  single_relation_pairs: bool = True,
                  instances: Optional[Mapping[str, str]] = None, **kwargs) -> 'RSME':
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities (or the
        subset :obj:`modalities`, e.g. :obj:`["image"]`), with the forget gate computed
        from the **training** triples (:obj:`forget_gate="mrp"`, by
        :func:`mrp_forget_gate` with :obj:`mrp_threshold` and
        :obj:`single_relation_pairs`), none (:obj:`"none"`) or given (a tensor). For each
        :obj:`modality: node type` of :obj:`instances` the entity's several instances
        (e.g. images) of that node type are reduced to one by :func:`filter_gate`."""
        from torch_mmkg.data import get_triples
        from .ikrl import dense_instances
        N, R, features, masks = features_from_data(data, modalities)
        for m, node_type in (instances or {}).items():
            x, k = dense_instances(data, node_type)
            features[m], masks[m] = filter_gate(x, k)
        if isinstance(forget_gate, str):
            choice(cls, 'forget_gate', forget_gate, ('mrp', 'none'))
            if forget_gate == 'none':
                forget_gate = None
            else:
                head, rel, tail = get_triples(data, 'train')
                forget_gate = torch.stack([
                    mrp_forget_gate(head, rel, tail, features[m], masks.get(m), R,
                                    mrp_threshold, single_relation_pairs)[0]
                    for m in features], dim=1) if features else None
        return cls(N, R, hidden_channels, features, masks, forget_gate=forget_gate, **kwargs)

    @property
    def complex_width(self) -> int:
        r"""The real width :math:`C` of the scored complex parts."""
        return self.representation.joint_complex_width

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""The relations :math:`[\mathrm{Re}\,\mathbf{r} \| \mathrm{Im}\,\mathbf{r} \| g_r]`
        :math:`[*, C + M]`."""
        return torch.cat([self.rel_emb(rel_type), self.forget_gate[rel_type]], dim=-1)

    def _split_views(self, *reps: Optional[Tensor]) -> Tuple[Tensor, ...]:
        r"""The penalty sees the complex parts only (not the feature blocks or gates)."""
        C = self.complex_width
        return tuple(x[..., :C] for x in reps if x is not None)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modalities={self.modalities}, combine={self.combine!r}, '
                f'similarity={self.similarity!r}, beta={self.beta})')


# The gates, from data ########################################################################


def mean_rank_percentile(head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                         features: Tensor, mask: Optional[Tensor], num_relations: int,
                         single_relation_pairs: bool = True) -> Tensor:
    r"""RSME's mean rank percentile (MRP) of every relation, :obj:`[R]` (NaN for a relation
    without any usable triple), from the given (training) triples: the procedure of the
    authors' ``MRP.py``.

    With :obj:`single_relation_pairs` only the "1-1-1" triples are used, those whose
    (head, tail) pair is linked by no other triple. The candidates :math:`\mathcal{C}` are
    the tails of all the used triples (every relation) that have the feature. For relation
    :math:`r` and each head :math:`h` (with the feature) of its used triples whose tails
    :math:`T_{h,r}` are candidates, every candidate :math:`c` is scored by
    :math:`\cos(\mathbf{x}_h, \mathbf{x}_c)` and

    .. math::
        \mathrm{MRP}_r = \frac{1}{|H_r|} \sum_{h \in H_r} \frac{1}{|T_{h,r}|}
        \sum_{t \in T_{h,r}} \frac{\mathrm{rank}_h(t)}{|\mathcal{C}|}, \qquad
        \mathrm{rank}_h(t) = 1 + |\{c \in \mathcal{C} : \cos(\mathbf{x}_h, \mathbf{x}_c) >
        \cos(\mathbf{x}_h, \mathbf{x}_t)\}|

    (ties in the tail's favour; the authors' :func:`numpy.argsort` orders them
    arbitrarily). Low values: the images of a relation's heads point to its tails.
    """
    if is_disk_features(features):  # every candidate's features at once: read whole
        features = features.read_all(
            what="RSME's mean rank percentile (forget_gate='mrp') compares the features of "
                 "every candidate tail",
            hint="Compute the gate once where the features fit in memory and pass it as "
                 "forget_gate=<[R, M] tensor>, or use forget_gate='none'")
    N = features.size(0)
    h, r, t = (x.view(-1).long().to(features.device)
               for x in (head_index, rel_type, tail_index))
    has = (torch.ones(N, dtype=torch.bool, device=features.device) if mask is None
           else mask.to(features.device))
    keep = torch.ones_like(h, dtype=torch.bool)
    if single_relation_pairs:
        _, inv, counts = torch.unique(h * N + t, return_inverse=True, return_counts=True)
        keep = counts[inv] == 1
    h, r, t = h[keep], r[keep], t[keep]
    cand = torch.unique(t)
    cand = cand[has[cand]]
    out = torch.full((num_relations, ), float('nan'), dtype=torch.float64)
    if cand.numel() == 0:
        return out
    x = F.normalize(features.double(), dim=-1)
    pos = torch.full((N, ), -1, dtype=torch.long, device=features.device)
    pos[cand] = torch.arange(cand.numel(), device=features.device)
    use = has[h] & (pos[t] >= 0)
    for rel in range(num_relations):
        sel = use & (r == rel)
        if not bool(sel.any()):
            continue
        hh, tt = h[sel], t[sel]
        heads, hinv = torch.unique(hh, return_inverse=True)
        scores = x[heads] @ x[cand].t()  # [H, C]
        true = scores[hinv, pos[tt]]
        rank = 1 + (scores[hinv] > true[:, None]).sum(dim=1)
        pct = rank.double() / cand.numel()
        per_head = pct.new_zeros(heads.numel()).index_add_(0, hinv, pct)
        count = torch.bincount(hinv, minlength=heads.numel()).double()
        out[rel] = (per_head / count).mean().item()
    return out


def mrp_forget_gate(head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    features: Tensor, mask: Optional[Tensor], num_relations: int,
                    threshold: float = 0.1, single_relation_pairs: bool = True
                    ) -> Tuple[Tensor, Tensor]:
    r"""RSME's forget gate from (training) triples: :math:`g_r = 1` if the relation's
    :func:`mean_rank_percentile` is at most :obj:`threshold` (its images rank its true
    tails within the top fraction :obj:`threshold` of the candidates), else 0, and 0 for a
    relation without usable triples. The authors' file name carries the threshold as a
    percentage (:obj:`remember_rate`, 100 in their :obj:`config.py`, which keeps every
    relation; 10 in our research card): :obj:`threshold = remember_rate / 100`.

    Returns:
        :obj:`(gate, mrp)`, both :obj:`[R]` (float; MRP NaN where undefined).
    """
    threshold = real('mrp_forget_gate', 'threshold', threshold, 0.0, 1.0)
    mrp = mean_rank_percentile(head_index, rel_type, tail_index, features, mask,
                               num_relations, single_relation_pairs)
    gate = (mrp <= threshold).float()  # NaN compares False: no evidence, no image term
    return gate, mrp


def filter_gate(features: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""RSME's filter gate with cosine similarity: of an entity's :math:`K` instances
    (images) :obj:`[N, K, F]` (mask :obj:`[N, K]`), keep the one with the largest summed
    similarity to its other present instances,

    .. math::
        k^*(e) = \operatorname*{arg\,max}_{k} \sum_{j \neq k} \cos(\mathbf{x}_{e,k},
        \mathbf{x}_{e,j}),

    (the first on ties; the authors sum pHash similarities of the raw images). Returns the
    kept features :obj:`[N, F]` and whether the entity had any instance :obj:`[N]` (zero
    rows where not)."""
    if features.dim() != 3:
        raise ValueError(f"filter_gate: features must be [N, K, F], got {tuple(features.shape)}")
    if mask is None:
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    if mask.shape != features.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"filter_gate: mask must be a bool {list(features.shape[:2])} tensor")
    x = F.normalize(features, dim=-1)
    sim = x @ x.transpose(1, 2)  # [N, K, K]
    K = features.size(1)
    eye = torch.eye(K, dtype=torch.bool, device=features.device)
    pair = mask[:, :, None] & mask[:, None, :] & ~eye
    total = torch.where(pair, sim, sim.new_zeros(())).sum(dim=-1)
    total = total.masked_fill(~mask, -math.inf)
    best = total.argmax(dim=-1)  # the first maximum
    any_ = mask.any(dim=-1)
    kept = features[torch.arange(features.size(0), device=features.device), best]
    return torch.where(any_[:, None], kept, kept.new_zeros(())), any_
