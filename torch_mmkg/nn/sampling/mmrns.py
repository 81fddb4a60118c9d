import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.data.feature_store import is_disk_features
from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.loader import NegativeSampler, Negatives
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.regimes import NegativeSampling, RegimeOutput
from torch_mmkg.nn.validation import choice, positive_int, real
from ._common import check_stacks, model_device_dtype, score_corrupted, single_view

__all__ = ['MMRNS', 'KnowledgeGuidedCrossModalAttention', 'gumbel_top_k', 'LOG_TINY']

#: The logit added to a drawn candidate so that it is not drawn again,
#: :math:`\log 10^{-38}` (the authors' code).
LOG_TINY = math.log(1e-38)


def _instances(x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    r"""Features :obj:`[N, F]` or :obj:`[N, K, F]` and their mask :obj:`[N]` or :obj:`[N, K]`
    as :obj:`[N, K, F]`, :obj:`[N, K]`."""
    if mask is None:
        mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
    if x.dim() == 2:
        x, mask = x[:, None], mask[:, None]
    return x, mask


class KnowledgeGuidedCrossModalAttention(torch.nn.Module):
    r"""The knowledge-guided cross-modal attention (KCA) of the `"Relation-enhanced Negative
    Sampling for Multimodal Knowledge Graph Completion"
    <https://arxiv.org/abs/2208.14178>`_ paper: for an entity :math:`e` with :math:`K_v`
    visual instances (image patches) and :math:`K_t` textual ones (sentences), in the
    context of a relation :math:`\mathbf{r}`,

    .. math::
        \mathbf{V} &= \mathrm{LeakyReLU}(\mathbf{X}_v \mathbf{W}_v + \mathbf{b}_v)
        \in \mathbb{R}^{K_v \times A}, \qquad
        \mathbf{T} = \mathrm{LeakyReLU}(\mathbf{X}_t \mathbf{W}_t + \mathbf{b}_t)
        \in \mathbb{R}^{K_t \times A}, \qquad
        \mathbf{C} = \mathbf{V}\mathbf{T}^{\top},

        \hat{\mathbf{V}} &= \mathrm{LN}\big((\sigma(\mathbf{W}_{rv}\mathbf{r}) \odot
        \mathbf{C})^{\top} \mathbf{V}\big) + \mathrm{LN}\big(\mathrm{softmax}_{K_v}
        (\mathbf{C}^{\top}) \mathbf{V}\big) \in \mathbb{R}^{K_t \times A},

        \hat{\mathbf{T}} &= \mathrm{LN}\big((\sigma(\mathbf{W}_{rt}\mathbf{r}) \odot
        \mathbf{C}) \mathbf{T}\big) + \mathrm{LN}\big(\mathrm{softmax}_{K_t}(\mathbf{C})
        \mathbf{T}\big) \in \mathbb{R}^{K_v \times A},

        \mathbf{v}_e &= \mathbf{W}_{pv} \mathrm{vec}(\hat{\mathbf{V}}) + \mathbf{b}_{pv},
        \qquad \mathbf{t}_e = \mathbf{W}_{pt} \mathrm{vec}(\hat{\mathbf{T}}) +
        \mathbf{b}_{pt},

        \tilde{\mathbf{t}}_e &= \mathbf{e}_s \odot \sigma\big(\mathbf{W}_2\,
        \mathrm{LeakyReLU}(\mathbf{W}_1 [\mathbf{e}_s; \mathbf{r}] + \mathbf{b}_1) +
        \mathbf{b}_2\big),

    with :math:`\sigma(\mathbf{W}_{r\cdot}\mathbf{r})` reshaped to :math:`K_v \times K_t`,
    one LayerNorm (shared, as in the authors' code) and LeakyReLU slope 0.1. Missing
    instances (mask False) are left out of the softmaxes and products
    (:obj:`mask_missing`); an entity with none of a modality gets zero attention there.
    One vector per entity (:obj:`[N, F]` features) is :math:`K = 1`.

    Args:
        visual (Tensor): :obj:`[N, K_v, F_v]` or :obj:`[N, F_v]` features.
        textual (Tensor): :obj:`[N, K_t, F_t]` or :obj:`[N, F_t]` features.
        entity_channels (int): The width of :math:`\mathbf{e}_s`.
        relation_channels (int): The width of :math:`\mathbf{r}`.
        visual_mask (Tensor, optional): :obj:`[N, K_v]` (or :obj:`[N]`) availability.
        textual_mask (Tensor, optional): :obj:`[N, K_t]` (or :obj:`[N]`) availability.
        attention_channels (int, optional): :math:`A`. (default: :obj:`50`)
        gate_channels (int, optional): The hidden width of the structural gate.
            (default: :obj:`100`)
        mask_missing (bool, optional): Leave missing instances out; :obj:`False` uses every
            stored row (the authors' zeros). (default: :obj:`True`)
        positive_layernorm (bool, optional): LayerNorm on both visual terms of the positive
            entity too; the authors' code leaves it off the softmax term of the positive
            (``positive_KCA``) while the candidates have it (:obj:`False`).
            (default: :obj:`True`)
        num_relations (int, optional): Give the KCA a relation table of its own
            (:math:`\mathbf{r}` then indexes it); :obj:`None`: :math:`\mathbf{r}` is given.

    Shapes:
        - **input:** entities :math:`[P]` (or :math:`[B]`), relations :math:`[B, D_r]`,
          structural embeddings :math:`[P, D]` (or :math:`[B, D]`)
        - **output:** :math:`\mathbf{v}_e, \mathbf{t}_e` :math:`[B, P, A]` and
          :math:`\tilde{\mathbf{t}}_e` :math:`[B, P, D]` (pairwise), or :math:`[B, \cdot]`
          (one entity per relation)
    """
    def __init__(self, visual: Tensor, textual: Tensor, entity_channels: int,
                 relation_channels: int, visual_mask: Optional[Tensor] = None,
                 textual_mask: Optional[Tensor] = None, attention_channels: int = 50,
                 gate_channels: int = 100, mask_missing: bool = True,
                 positive_layernorm: bool = True, num_relations: Optional[int] = None):
        super().__init__()
        xv, mv = _instances(visual, visual_mask)
        xt, mt = _instances(textual, textual_mask)
        if xv.size(0) != xt.size(0):
            raise ValueError(f"KCA: visual and textual features cover {xv.size(0)} and "
                             f"{xt.size(0)} entities")
        self.register_buffer('x_visual', xv.float(), persistent=False)
        self.register_buffer('mask_visual', mv.bool(), persistent=False)
        self.register_buffer('x_textual', xt.float(), persistent=False)
        self.register_buffer('mask_textual', mt.bool(), persistent=False)
        A = positive_int(self, 'attention_channels', attention_channels)
        H = positive_int(self, 'gate_channels', gate_channels)
        D = positive_int(self, 'entity_channels', entity_channels)
        Dr = positive_int(self, 'relation_channels', relation_channels)
        self.num_visual, self.num_textual = xv.size(1), xt.size(1)
        self.mask_missing = choice(self, 'mask_missing', mask_missing, (True, False))
        self.positive_layernorm = choice(self, 'positive_layernorm', positive_layernorm,
                                         (True, False))
        Kv, Kt = self.num_visual, self.num_textual
        self.lin_visual = torch.nn.Linear(xv.size(-1), A)
        self.lin_textual = torch.nn.Linear(xt.size(-1), A)
        self.gate_visual = torch.nn.Linear(Dr, Kv * Kt)
        self.gate_textual = torch.nn.Linear(Dr, Kv * Kt)
        self.norm = torch.nn.LayerNorm(A)
        self.proj_visual = torch.nn.Linear(Kt * A, A)
        self.proj_textual = torch.nn.Linear(Kv * A, A)
        self.struct1 = torch.nn.Linear(D + Dr, H)
        self.struct2 = torch.nn.Linear(H, D)
        self.rel_emb = (torch.nn.Embedding(positive_int(self, 'num_relations', num_relations),
                                           Dr) if num_relations is not None else None)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Xavier-normal weights (the authors' code), default biases."""
        for m in self.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.reset_parameters()
                torch.nn.init.xavier_normal_(m.weight)
        self.norm.reset_parameters()

    def encode(self, index: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        r""":math:`\mathbf{V}, \mathbf{T}, \mathbf{C}` of :obj:`index` and the instance
        masks."""
        mv, mt = self.mask_visual[index], self.mask_textual[index]
        if not self.mask_missing:
            mv, mt = torch.ones_like(mv), torch.ones_like(mt)
        V = F.leaky_relu(self.lin_visual(self.x_visual[index]), 0.1)
        T = F.leaky_relu(self.lin_textual(self.x_textual[index]), 0.1)
        V = torch.where(mv[..., None], V, V.new_zeros(()))
        T = torch.where(mt[..., None], T, T.new_zeros(()))
        return V, T, V @ T.transpose(-1, -2), mv, mt

    @staticmethod
    def _softmax(logits: Tensor, mask: Tensor) -> Tensor:
        logits = logits.masked_fill(~mask, float('-inf'))
        some = mask.any(dim=-1, keepdim=True)
        out = torch.softmax(torch.where(some, logits, torch.zeros_like(logits)), dim=-1)
        return torch.where(some, out, torch.zeros_like(out))

    def relation(self, r: Tensor) -> Tensor:
        r"""The relation input: rows of the KCA's own table for ids, else :obj:`r`."""
        return self.rel_emb(r) if self.rel_emb is not None else r

    def forward(self, index: Tensor, r: Tensor, e_s: Tensor, pairwise: bool = True,
                positive: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The views :math:`(\mathbf{v}_e, \mathbf{t}_e, \tilde{\mathbf{t}}_e)` of entities
        :obj:`index` with structural embeddings :obj:`e_s` under relations :obj:`r` (ids for
        a KCA with its own table): every entity under every relation (:obj:`pairwise`,
        :math:`[B, P, \cdot]`), or entity :math:`b` under relation :math:`b`
        (:math:`[B, \cdot]`; :obj:`positive` marks the positives of the authors'
        :obj:`positive_layernorm=False`)."""
        r = self.relation(r)
        V, T, C, mv, mt = self.encode(index)  # [P, Kv, A], [P, Kt, A], [P, Kv, Kt]
        Kv, Kt = self.num_visual, self.num_textual
        # softmax over the patches for each sentence, over the sentences for each patch
        v_att = self._softmax(C.transpose(-1, -2), mv[..., None, :]) @ V  # [P, Kt, A]
        t_att = self._softmax(C, mt[..., None, :]) @ T  # [P, Kv, A]
        gv = torch.sigmoid(self.gate_visual(r)).view(-1, Kv, Kt)  # [B, Kv, Kt]
        gt = torch.sigmoid(self.gate_textual(r)).view(-1, Kv, Kt)
        if pairwise:
            gv, gt, r_ = gv[:, None], gt[:, None], r[:, None, :]  # against [P, ...]
            e = e_s[None].expand(r.size(0), *e_s.shape)
        else:
            r_, e = r, e_s
        v_rel = (gv * C).transpose(-1, -2) @ V  # [B, (P,) Kt, A]
        t_rel = (gt * C) @ T  # [B, (P,) Kv, A]
        v_soft = self.norm(v_att) if (self.positive_layernorm or not positive) else v_att
        v_hat = self.norm(v_rel) + v_soft
        t_hat = self.norm(t_rel) + self.norm(t_att)
        v_e = self.proj_visual(v_hat.flatten(-2))
        t_e = self.proj_textual(t_hat.flatten(-2))
        r_ = r_.expand(*e.shape[:-1], r_.size(-1))
        gate = torch.sigmoid(self.struct2(F.leaky_relu(self.struct1(torch.cat([e, r_], -1)),
                                                       0.1)))
        return v_e, t_e, e * gate


def gumbel_top_k(logits: Tensor, k: int, generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, Tensor]:
    r"""Draws :math:`k` candidates per row of :obj:`logits` :math:`[B, P]` by hard
    Gumbel-softmax (temperature 1) without replacement, as the authors' code: draw
    :math:`y = \mathrm{softmax}(\mathbf{l} + \mathbf{g})`, :math:`g_p = -\log(-\log u_p)`,
    take the one-hot of its argmax with the straight-through estimator
    :math:`\mathrm{onehot} - \mathrm{sg}(y) + y`, then add :data:`LOG_TINY` to the drawn
    candidate's logit before the next draw. Returns the straight-through one-hots
    :math:`[B, k, P]` (forward: exactly one-hot) and the drawn indices :math:`[B, k]`."""
    hots, idx = [], []
    for _ in range(k):
        u = torch.rand(logits.shape, generator=generator, device=logits.device,
                       dtype=logits.dtype)
        g = -torch.log(-torch.log(u.clamp(min=torch.finfo(u.dtype).tiny)))
        y = torch.softmax(logits + g, dim=-1)
        i = y.argmax(dim=-1)
        hard = F.one_hot(i, logits.size(-1)).to(y.dtype)
        hots.append(hard - y.detach() + y)
        idx.append(i)
        logits = logits + hard * LOG_TINY
    return torch.stack(hots, dim=1), torch.stack(idx, dim=1)


class MMRNS(NegativeSampling):
    r"""The relation-enhanced negative sampler of the `"Relation-enhanced Negative Sampling
    for Multimodal Knowledge Graph Completion" <https://arxiv.org/abs/2208.14178>`_ paper, as
    a training regime of any model (scored through its representation stacks,
    :meth:`~torch_mmkg.nn.KGEModel.modality_stack` and
    :meth:`~torch_mmkg.nn.KGEModel.score_stacks`).

    For a positive whose side :math:`e^+` is corrupted (head or tail, as the run's sampler
    draws it), a random pre-sample of :math:`P` entities (1,500; one per batch) is scored
    by the similarity of its views under the positive's relation (the
    :class:`KnowledgeGuidedCrossModalAttention` views :math:`x \in \{v, t, \tilde{t}\}`)
    to those of :math:`e^+`,

    .. math::
        q_p = \sum_{x} \mathrm{softmax}_p\big(\cos(\mathbf{x}_p, \mathbf{x}_{e^+}) /
        \tau\big), \qquad \tau = \frac{\tau_0}{1 + \ln(\mathrm{step} + 1)},

    with :math:`\tau_0 = 10` and the step counted over training batches; the true answers of
    the query (the training triples) are masked out (:math:`\log q_p = -\infty`). :math:`K`
    negatives are drawn by hard Gumbel-softmax without replacement (:func:`gumbel_top_k`),
    and the negative's representation is the one-hot combination of the pre-sample's stacks,
    :math:`\sum_p y_p\, \mathrm{stack}(p)`, so that the negative scores' gradient reaches the
    sampler through the straight-through estimator. The loss is the regime's loss of the
    positive and negative scores (self-adversarial, :math:`\alpha = 0.5`, in the paper)
    plus the contrastive terms,

    .. math::
        \mathcal{L} = \mathcal{L}_{kge} + \frac{\mathcal{L}_v + \mathcal{L}_t +
        \mathcal{L}_{\tilde{t}}}{3\lambda}, \qquad
        \mathcal{L}_x = -\log \frac{\sum_{b,\ p \in A_b} w_{bp}\, e^{\cos_x(b, p)}}
        {\sum_{b,\ p \notin A_b} w_{bp}\, e^{\cos_x(b, p)}},

    over the batch and the pre-sample, :math:`A_b` the true answers of query :math:`b`,
    :math:`\lambda = 100`, and :math:`w_{bp} = \frac{1}{P} \prod_{k : p_{bk} = p} a_{bk}`,
    :math:`a_{bk}` the self-adversarial weight :math:`\mathrm{softmax}_k(\alpha s^-_{bk})`
    of the :math:`k`-th negative (constants), as the authors' code (``run_gumbel.py``)
    computes them. A term whose numerator is empty (no true answer in the pre-sample) is
    left out (the code's would be infinite).

    The relation :math:`\mathbf{r}` the KCA reads is the model's relation embedding
    (:meth:`~torch_mmkg.nn.KGEModel.relation`, as the code reads its KGE model's;
    :obj:`relation_source="model"`) or a table of the KCA's own (:obj:`"own"`, for models
    whose relation representation is not a vector of its own); :math:`\mathbf{e}_s` is the
    model's structural slot (slot 0 of its stack). Both receive the sampler's gradient, as
    in the code. The visual and textual features come from the model's representation
    (modalities :obj:`visual` and :obj:`textual`, several instances per entity where it
    holds them) or, for a model without them (TransE in the paper), from the graph given to
    :meth:`bind` (with :obj:`instances`, their multi-instance node types, see
    :func:`~torch_mmkg.nn.models.ikrl.dense_instances`).

    Where the code differs from the paper, a switch picks one: :obj:`detach_norm` (the code
    divides the cosines by detached norms; :obj:`True`), :obj:`positive_layernorm` (see
    :class:`KnowledgeGuidedCrossModalAttention`; :obj:`True`, the paper). Not reproduced:
    the code's subsampling weights of the loss, its lr decay (a no-op in the code) and its
    alternating head-batch / tail-batch iterator (here a side per positive).

    Memory: the pairwise attention holds :math:`B \cdot P \cdot \max(K_v, K_t) \cdot A`
    numbers per batch (the paper's design; 1.5 GB at the README's settings with 24 patches).

    Args:
        loss (KGELoss, optional): (default: the model's own, else
            :class:`~torch_mmkg.nn.loss.SelfAdversarialLoss` with :math:`\alpha = 0.5`)
        num_negatives (int, optional): :math:`K`. (default: :obj:`1`)
        strategy (str, optional): The corrupted side, :obj:`"uniform"` or
            :obj:`"bernoulli"`. (default: :obj:`"uniform"`)
        twins (bool, optional): Not supported. (default: :obj:`False`)
        side_per (str, optional): Only :obj:`"positive"`. (default: :obj:`"positive"`)
        pre_sample (int, optional): :math:`P` (all entities if larger).
            (default: :obj:`1500`)
        temperature (float, optional): :math:`\tau_0`. (default: :obj:`10.0`)
        loss_rate (float, optional): :math:`\lambda`. (default: :obj:`100.0`)
        adversarial_temperature (float, optional): :math:`\alpha` of the weights :math:`a`
            (:obj:`None`: the loss's where it is self-adversarial, else 0, uniform).
            (default: :obj:`None`)
        visual (str, optional): The visual modality. (default: :obj:`"image"`)
        textual (str, optional): The textual modality. (default: :obj:`"text"`)
        instances (dict, optional): Per modality, the node type of its several instances in
            the graph. (default: :obj:`None`)
        relation_source (str, optional): :obj:`"model"` or :obj:`"own"`.
            (default: :obj:`"model"`)
        attention_channels (int, optional): :math:`A`. (default: :obj:`50`)
        gate_channels (int, optional): (default: :obj:`100`)
        mask_missing (bool, optional): (default: :obj:`True`)
        positive_layernorm (bool, optional): (default: :obj:`True`)
        detach_norm (bool, optional): (default: :obj:`True`)
        kca_lr (float, optional): The KCA's learning rate (:obj:`None`: the run's).
            (default: :obj:`None`)
        features (Mapping[str, Tensor], optional): The :obj:`visual` and :obj:`textual`
            features (:obj:`[N, F]` or :obj:`[N, K, F]`), instead of the model's or the
            graph's. (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Their availability. (default: :obj:`None`)

    Shapes:
        - **batch:** :obj:`(head, rel, tail, negatives)`; only the corrupted side of the
          negatives is read
        - **output:** :class:`~torch_mmkg.nn.regimes.RegimeOutput` with the terms
          :obj:`"contrastive"` (weighted) and the model's; its :obj:`context` also holds the
          drawn :obj:`"negatives"` and the temperature :obj:`"tau"`
    """
    name = 'mmrns'

    def __init__(self, loss: Optional[torch.nn.Module] = None, num_negatives: int = 1,
                 strategy: str = 'uniform', twins: bool = False, side_per: str = 'positive',
                 pre_sample: int = 1500, temperature: float = 10.0, loss_rate: float = 100.0,
                 adversarial_temperature: Optional[float] = None, visual: str = 'image',
                 textual: str = 'text', instances: Optional[Mapping[str, str]] = None,
                 relation_source: str = 'model', attention_channels: int = 50,
                 gate_channels: int = 100, mask_missing: bool = True,
                 positive_layernorm: bool = True, detach_norm: bool = True,
                 kca_lr: Optional[float] = None,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None):
        super().__init__(loss, num_negatives, strategy, twins, side_per)
        if twins:
            raise ValueError("MMRNS: twins negatives are not supported")
        if side_per != 'positive':
            raise ValueError("MMRNS draws the corrupted side once per positive "
                             "(side_per='positive')")
        self.num_negatives = positive_int(self, 'num_negatives', num_negatives)
        self.pre_sample = positive_int(self, 'pre_sample', pre_sample)
        self.temperature = real(self, 'temperature', temperature, 0.0, low_open=True)
        self.loss_rate = real(self, 'loss_rate', loss_rate, 0.0, low_open=True)
        self.adversarial_temperature = (
            None if adversarial_temperature is None else
            real(self, 'adversarial_temperature', adversarial_temperature, 0.0))
        self.visual, self.textual = str(visual), str(textual)
        self.instances = dict(instances or {})
        self.relation_source = choice(self, 'relation_source', relation_source,
                                      ('model', 'own'))
        self.attention_channels = positive_int(self, 'attention_channels', attention_channels)
        self.gate_channels = positive_int(self, 'gate_channels', gate_channels)
        self.mask_missing = choice(self, 'mask_missing', mask_missing, (True, False))
        self.positive_layernorm = choice(self, 'positive_layernorm', positive_layernorm,
                                         (True, False))
        self.detach_norm = choice(self, 'detach_norm', detach_norm, (True, False))
        self.kca_lr = None if kca_lr is None else real(self, 'kca_lr', kca_lr, 0.0,
                                                       low_open=True)
        self.features = dict(features or {})
        self.masks = dict(masks or {})
        missing = [m for m in (self.visual, self.textual) if self.features and m not in
                   self.features]
        if missing:
            raise ValueError(f"MMRNS: features lack the modalities {missing} (given "
                             f"{list(self.features)})")
        self.kca: Optional[KnowledgeGuidedCrossModalAttention] = None
        self.register_buffer('step', torch.zeros((), dtype=torch.long))
        self._rng: Optional[torch.Generator] = None
        self._known: Optional[KnownTriples] = None

    def default_loss(self) -> torch.nn.Module:
        return SelfAdversarialLoss(0.5)

    # Trainable parts ##########################################################################

    def _features(self, model, data) -> Dict[str, Tuple[Tensor, Optional[Tensor]]]:
        rep = getattr(model, 'representation', None)
        names = (self.visual, self.textual)
        if self.features:
            return {m: (self.features[m], self.masks.get(m)) for m in names}
        if rep is not None and all(hasattr(rep, f'x_{m}') for m in names):
            from torch_mmkg.nn.representation import EntityRepresentation
            out = {}
            for m in names:
                x = getattr(rep, f'x_{m}')
                if is_disk_features(x):  # read whole: the KCA holds the tables
                    x = EntityRepresentation.features(rep, m)
                out[m] = (x.detach(), getattr(rep, f'mask_{m}', None))
            return out
        if data is None:
            raise ValueError(f"MMRNS needs the '{self.visual}' and '{self.textual}' features "
                             f"of the entities: a model holding both modalities, or the graph "
                             f"(bind(model, data), as the Trainer does); "
                             f"{type(model).__name__} holds "
                             f"{list(getattr(model, 'modalities', []) or [])}")
        from torch_mmkg.nn.models._modalities import features_from_data
        from torch_mmkg.nn.models.ikrl import dense_instances
        pooled = [m for m in names if m not in self.instances]
        out = {}
        if pooled:
            _, _, feats, masks = features_from_data(data, pooled)
            out.update({m: (feats[m], masks[m]) for m in pooled})
        for m in names:
            if m in self.instances:
                out[m] = dense_instances(data, self.instances[m])
        return out

    def bind(self, model, data=None) -> 'MMRNS':
        r"""Builds the KCA for :obj:`model` (features from the model or :obj:`data`), on the
        model's device and dtype, once."""
        if self.kca is not None:
            return self
        check_stacks('MMRNS', model)
        device, dtype = model_device_dtype(model)
        feats = self._features(model, data)
        (xv, mv), (xt, mt) = feats[self.visual], feats[self.textual]
        if self.relation_source == 'model':
            with torch.no_grad():
                width = model.relation(torch.zeros(1, dtype=torch.long, device=device)).size(-1)
            own = None
        else:
            width, own = model.hidden_channels, model.num_relations
        self.kca = KnowledgeGuidedCrossModalAttention(
            xv, xt, model.representation.channels, width, mv, mt, self.attention_channels,
            self.gate_channels, self.mask_missing, self.positive_layernorm, own)
        self.kca.to(device=device, dtype=dtype)
        self.step = self.step.to(device)
        return self

    def param_groups(self) -> List[Dict[str, Any]]:
        if self.kca is None:
            return []
        group: Dict[str, Any] = {'params': list(self.kca.parameters())}
        if self.kca_lr is not None:
            group['lr'] = self.kca_lr
        return [group]

    # Batches ##################################################################################

    def loader(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               known=None, generator: Optional[torch.Generator] = None, **kwargs):
        r"""The model's loader (the negatives it draws give the corrupted side only); the
        training triples become the true answers the sampler masks, and the regime draws
        from :obj:`generator` too."""
        self.bind(model)
        self._rng = generator
        self._known = KnownTriples(head_index, rel_type, tail_index, model.num_nodes,
                                   model.num_relations).to(head_index.device)
        return model.loader(head_index, rel_type, tail_index, num_negatives=1,
                            strategy=self.strategy, generator=generator, **kwargs)

    def tau(self, step: Optional[int] = None) -> float:
        r""":math:`\tau_0 / (1 + \ln(\mathrm{step} + 1))` at :obj:`step` (default: the
        regime's)."""
        step = int(self.step) if step is None else int(step)
        return self.temperature / (1.0 + math.log(step + 1))

    def answers(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                corrupt_head: Tensor, candidates: Tensor) -> Tensor:
        r"""Which :obj:`candidates` :math:`[P]` are true answers :math:`[B, P]` of each
        positive's query (the training triples given to :meth:`loader`; the positive's own
        entity without them)."""
        ch = corrupt_head[:, None]
        own = torch.where(ch, head_index[:, None], tail_index[:, None])
        out = candidates[None, :] == own
        if self._known is not None:
            c, r = candidates[None, :], rel_type[:, None]
            heads = self._known.contains(c, r, tail_index[:, None])
            tails = self._known.contains(head_index[:, None], r, c)
            out = out | torch.where(ch, heads, tails)
        return out

    def cosines(self, views: Sequence[Tensor], anchors: Sequence[Tensor]) -> List[Tensor]:
        r"""Per view, :math:`\cos(\mathbf{x}_p, \mathbf{x}_{e^+})` :math:`[B, P]` (norms
        detached with :obj:`detach_norm`, plus :math:`10^{-10}`, as the code)."""
        out = []
        for x, a in zip(views, anchors):
            dot = (x * a[:, None, :]).sum(-1)
            norm = x.norm(dim=-1) * a.norm(dim=-1)[:, None]
            out.append(dot / ((norm.detach() if self.detach_norm else norm) + 1e-10))
        return out

    @staticmethod
    def sampling_logits(sims: Sequence[Tensor], answers: Tensor, tau: float) -> Tensor:
        r""":math:`\log q` :math:`[B, P]`, :math:`q = \sum_x \mathrm{softmax}(\cos_x / \tau)`,
        :math:`-\infty` at the true answers (none masked in a row of answers only)."""
        q = sum(torch.softmax(s / tau, dim=-1) for s in sims)
        usable = ~answers
        usable = torch.where(usable.any(dim=-1, keepdim=True), usable, torch.ones_like(usable))
        return torch.log(q).masked_fill(~usable, float('-inf'))

    @staticmethod
    def presample_weights(index: Tensor, adversarial: Tensor, P: int) -> Tensor:
        r"""The weights :math:`w` :math:`[B, P]` of the contrastive terms: :math:`1/P`, times
        the self-adversarial weight :obj:`adversarial` :math:`[B, K]` of each drawn
        negative :obj:`index` :math:`[B, K]` (as often as it is drawn)."""
        weight = torch.full((index.size(0), P), 1.0 / P, dtype=adversarial.dtype,
                            device=index.device)
        return weight.scatter_reduce(1, index, adversarial, reduce='prod', include_self=True)

    def contrastive(self, sims: Sequence[Tensor], answers: Tensor, weight: Tensor) -> Tensor:
        r""":math:`(\mathcal{L}_v + \mathcal{L}_t + \mathcal{L}_{\tilde{t}}) / (3\lambda)`
        from the cosines :math:`[B, P]`, the true answers and the weights :math:`w`."""
        total = sims[0].new_zeros(())
        if not bool(answers.any()) or bool(answers.all()):
            return total
        for s in sims:
            e = torch.exp(s) * weight
            total = total - torch.log(e[answers].sum() / e[~answers].sum())
        return total / (3 * self.loss_rate)

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        head_index, rel_type, tail_index = batch[:3]
        negatives = batch[3] if len(batch) > 3 else None
        head_index, rel_type, tail_index, negatives = model._check_negatives(
            'loss', head_index, rel_type, tail_index, negatives)
        self.bind(model)
        if negatives is None:
            negatives = NegativeSampler(model.num_nodes, 1, generator=self._rng)(
                head_index, rel_type, tail_index)
        if negatives.per_negative:
            raise ValueError("MMRNS draws the corrupted side once per positive")
        ch = negatives.corrupt_head
        N, device = model.num_nodes, head_index.device
        P = min(self.pre_sample, N)
        pre = torch.randperm(N, generator=self._rng, device=device)[:P]
        own = torch.where(ch, head_index, tail_index)
        tau = self.tau()
        # the views of the pre-sample under each positive's relation, and of the positives
        rel_in = rel_type if self.relation_source == 'own' else model.relation(rel_type)
        stack_p, mask_p = model.modality_stack(pre)  # [P, S, D]
        stack_o, _ = model.modality_stack(own)
        views = self.kca(pre, rel_in, stack_p[:, 0], pairwise=True)
        anchors = self.kca(own, rel_in, stack_o[:, 0], pairwise=False, positive=True)
        sims = self.cosines(views, anchors)
        answers = self.answers(head_index, rel_type, tail_index, ch, pre)  # [B, P]
        logits = self.sampling_logits(sims, answers, tau)
        K = self.num_negatives
        hots, idx = gumbel_top_k(logits, K, self._rng)  # [B, K, P], [B, K]
        neg_stack = torch.einsum('bkp,psd->bksd', hots.to(stack_p.dtype), stack_p)
        neg_mask = mask_p[idx]
        neg = score_corrupted(model, head_index, rel_type, tail_index, ch, neg_stack, neg_mask)
        drawn = Negatives(pre[idx], ch)
        scored = model.score_batch(head_index, rel_type, tail_index, drawn)
        pos, _ = single_view('MMRNS', model, scored)
        loss_fn = self.loss_for(model)
        loss = loss_fn(pos, neg)
        alpha = self.adversarial_temperature
        if alpha is None:
            alpha = loss_fn.temperature if isinstance(loss_fn, SelfAdversarialLoss) else 0.0
        weight = self.presample_weights(idx, torch.softmax(alpha * neg.detach(), dim=-1), P)
        terms = dict(scored.terms)
        terms['contrastive'] = self.contrastive(sims, answers, weight)
        for term in terms.values():
            loss = loss + term
        if torch.is_grad_enabled():
            self.step += 1
        context = dict(scored.context, negatives=drawn, tau=tau, pre_sample=pre)
        return RegimeOutput(loss, terms, context)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_negatives={self.num_negatives}, '
                f'pre_sample={self.pre_sample}, temperature={self.temperature}, '
                f'loss_rate={self.loss_rate}, loss={self.loss_fn!r})')
