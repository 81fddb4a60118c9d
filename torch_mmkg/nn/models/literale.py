import math
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion import Fusion
from torch_mmkg.nn.fusion.base import check_stack
from torch_mmkg.nn.interactions import ComplExInteraction, DistMultInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import BCELoss
from torch_mmkg.nn.validation import check_sizes, choice, probability
from ._literals import (LITERAL_PRESENCE, NORMALIZE, LiteralRepresentation, QueryDropout,
                        xavier_normal_parts)
from ._modalities import FromDataMixin

__all__ = ['LiteralE', 'LiteralGate']

#: The base models and their number of real parts (ComplEx: real and imaginary).
BASES = {'distmult': 1, 'complex': 2}


class LiteralGate(Fusion):
    r"""LiteralE's :math:`g` (Eq. 4 of the `"Incorporating Literals into Knowledge Graph
    Embeddings" <https://arxiv.org/abs/1802.00934>`_ paper) over the stack of
    :class:`~torch_mmkg.nn.models._literals.LiteralRepresentation`: the structural embedding
    :math:`\mathbf{e}` and the bias-free linear maps :math:`\mathbf{W}_l \mathbf{l}` and
    :math:`\mathbf{W}_{hl} \mathbf{l}` of the literal vector (the literal blocks of
    :math:`\mathbf{W}_z` and :math:`\mathbf{W}_h`, computed by the representation, once per
    entity),

    .. math::
        \mathbf{z} &= \sigma(\mathbf{W}_{e} \mathbf{e} + \mathbf{W}_{l} \mathbf{l} +
        \mathbf{b}), \qquad \mathbf{h} = \tanh(\mathbf{W}_h [\mathbf{e}; \mathbf{l}] +
        \mathbf{b}_h) = \tanh(\mathbf{W}_{he} \mathbf{e} + \mathbf{W}_{hl} \mathbf{l} +
        \mathbf{b}_h), \\
        \hat{\mathbf{e}} &= (1 - \mathbf{z}) \odot \mathbf{e} + \mathbf{z} \odot \mathbf{h},

    or, with :obj:`gate=False`, the linear :math:`g_{\mathrm{lin}}`, :math:`\hat{\mathbf{e}} =
    \mathbf{W} [\mathbf{e}; \mathbf{l}] + \mathbf{b}` (stack :math:`[\mathbf{e},
    \mathbf{W}_l \mathbf{l}]`). With :obj:`parts=2` the embedding is complex (real parts,
    then imaginary parts) and each part has its own :math:`g` over the same literals, as the
    original ComplEx-LiteralE (:obj:`ComplexLiteral_gate`: one :obj:`Gate` for the real and
    one for the imaginary table).

    With :obj:`mask_missing` an entity without any literal (mask of the literal slots False)
    keeps :math:`\hat{\mathbf{e}} = \mathbf{e}`; :obj:`mask_missing=False` gates it with
    :math:`\mathbf{l} = \mathbf{0}` as the original code does.

    The parameters are initialised as the original's :obj:`torch.nn.Linear` layers: the
    blocks of :math:`\mathbf{W}_h` (:math:`\mathbf{W}` without the gate) and
    :math:`\mathbf{b}_h` uniform in :math:`\pm 1/\sqrt{d + L}`, :math:`\mathbf{W}_e` in
    :math:`\pm 1/\sqrt{d}`, :math:`\mathbf{b} = \mathbf{0}`.

    Args:
        channels (int): The width :math:`d` of one part.
        literal_channels (int): The width :math:`L` of the literal vector.
        parts (int, optional): :obj:`1` (real) or :obj:`2` (complex). (default: :obj:`1`)
        gate (bool, optional): The gated :math:`g`, else :math:`g_{\mathrm{lin}}`.
            (default: :obj:`True`)
        mask_missing (bool, optional): (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, 3, P d]` (:math:`[*, 2, P d]` without the gate), mask
          :math:`[*, S]`
        - **output:** :math:`\hat{\mathbf{e}}` :math:`[*, P d]`, :obj:`None`
    """
    def __init__(self, channels: int, literal_channels: int, parts: int = 1,
                 gate: bool = True, mask_missing: bool = True):
        super().__init__()
        self.channels, self.literal_channels = int(channels), int(literal_channels)
        self.parts, self.use_gate, self.mask_missing = int(parts), bool(gate), bool(mask_missing)
        P, d = self.parts, self.channels
        self.weight = torch.nn.Parameter(torch.empty(P, d, d))
        self.bias = torch.nn.Parameter(torch.empty(P, d))
        if self.use_gate:
            self.gate_weight = torch.nn.Parameter(torch.empty(P, d, d))
            self.gate_bias = torch.nn.Parameter(torch.empty(P, d))
        else:
            self.register_parameter('gate_weight', None)
            self.register_parameter('gate_bias', None)
        self.reset_parameters()

    @property
    def num_slots(self) -> int:
        return 3 if self.use_gate else 2

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.channels + self.literal_channels)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        torch.nn.init.uniform_(self.bias, -bound, bound)
        if self.use_gate:
            bound = 1.0 / math.sqrt(self.channels)
            torch.nn.init.uniform_(self.gate_weight, -bound, bound)
            torch.nn.init.zeros_(self.gate_bias)

    def _parts(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.parts, self.channels))

    def gate(self, stack: Tensor) -> Tensor:
        r"""The gate :math:`\mathbf{z}` :math:`[*, P d]` of the stack (before masking)."""
        e, u = self._parts(stack[..., 0, :]), self._parts(stack[..., 1, :])
        return torch.sigmoid(torch.einsum('...pi,poi->...po', e, self.gate_weight) + u
                             + self.gate_bias).flatten(-2)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        check_stack(stack, mask, self.parts * self.channels, self.num_slots)
        e = self._parts(stack[..., 0, :])
        v = self._parts(stack[..., -1, :])
        h = torch.einsum('...pi,poi->...po', e, self.weight) + v + self.bias
        if self.use_gate:
            z = self._parts(self.gate(stack))
            out = (1.0 - z) * e + z * torch.tanh(h)
        else:
            out = h
        out = out.flatten(-2)
        if self.mask_missing and mask is not None:
            out = torch.where(mask[..., 1:2], out, stack[..., 0, :])
        return out, None

    def extra_repr(self) -> str:
        return (f'{self.channels}, literal_channels={self.literal_channels}, '
                f'parts={self.parts}, gate={self.use_gate}, mask_missing={self.mask_missing}')


class LiteralE(FromDataMixin, KGEModel):
    r"""The LiteralE model from the `"Incorporating Literals into Knowledge Graph Embeddings"
    <https://arxiv.org/abs/1802.00934>`_ paper (ISWC 2019): each entity's structural
    embedding :math:`\mathbf{e}` and its literal vector :math:`\mathbf{l} \in \mathbb{R}^L`
    (one value per attribute, from one or several literal tables) are merged by a learnable
    function :math:`g` into :math:`\hat{\mathbf{e}} = g(\mathbf{e}, \mathbf{l})`, which
    replaces :math:`\mathbf{e}` in a base score function, for the query entity and for every
    candidate. The gated :math:`g` (Eq. 4, :class:`LiteralGate`) is

    .. math::
        \hat{\mathbf{e}} = (1 - \mathbf{z}) \odot \mathbf{e} + \mathbf{z} \odot
        \tanh(\mathbf{W}_h [\mathbf{e}; \mathbf{l}] + \mathbf{b}_h), \qquad
        \mathbf{z} = \sigma(\mathbf{W}_e \mathbf{e} + \mathbf{W}_l \mathbf{l} + \mathbf{b}),

    the linear one (:obj:`gate=False`) :math:`\hat{\mathbf{e}} = \mathbf{W}[\mathbf{e};
    \mathbf{l}] + \mathbf{b}`. The base is DistMult, :math:`f(h, r, t) = \langle
    \hat{\mathbf{h}}, \mathbf{r}, \hat{\mathbf{t}} \rangle`, or ComplEx, :math:`f(h, r, t) =
    \mathrm{Re}\langle \hat{\mathbf{h}}, \mathbf{r}, \overline{\hat{\mathbf{t}}} \rangle`, whose
    real and imaginary parts each have their own :math:`g` over the same :math:`\mathbf{l}` (as
    the authors' :obj:`ComplexLiteral_gate`). Training is 1-N with binary cross-entropy on
    :math:`\sigma(f)`, without label smoothing, and input dropout on the query entity's
    :math:`\hat{\mathbf{e}}` and the relation
    (:class:`~torch_mmkg.nn.models._literals.QueryDropout`), as in the authors'
    code (SmartDataAnalytics/LiteralE, :obj:`main_literal.py`, :obj:`model.py`).

    **Literals.** Each modality given is a literal table, concatenated into :math:`\mathbf{l}`
    (several tables, e.g. numeric attributes and a text vector, are the authors'
    :obj:`GateMulti`: one linear map of :math:`[\mathbf{e}; \mathbf{l}_1; \mathbf{l}_2]` and one
    gate term per table, which is the same as one map of the concatenation). Which attributes
    an entity has is read per table (:obj:`literal_presence`, see
    :mod:`torch_mmkg.nn.models._literals`): by default from the :obj:`[values | presence]`
    layout of this library's numeric literals, or the per-entity mask for a dense vector.
    Attribute columns are min-max normalised (:obj:`literal_normalization="minmax"`, the
    original's normalisation, over the entities that have the attribute), dense vectors are
    used as they are; a missing attribute is :math:`0`, which in the bias-free literal blocks of
    :math:`\mathbf{W}_h` and :math:`\mathbf{W}_l` contributes nothing. It cannot be told from
    an attribute at its minimum (as in the original, where both are 0) unless
    :obj:`presence_input=True` appends presence indicators to :math:`\mathbf{l}`. An entity
    without any literal keeps :math:`\hat{\mathbf{e}} = \mathbf{e}` (:obj:`mask_missing`); the
    original gates it with :math:`\mathbf{l} = \mathbf{0}` (:obj:`mask_missing=False`).

    **Head queries.** The original trains and ranks :math:`(t, r, ?)` with the relation of
    :math:`(h, r, t)` itself; for DistMult that is :meth:`score_heads` (the default,
    :obj:`inverse_relations=False`); :obj:`inverse_relations=True` learns inverse relations
    instead.

    One-vs-all scoring (evaluation, and each 1-N training batch) computes the fused table
    :math:`\hat{\mathbf{E}}` of all entities once (:meth:`prepare_scoring`: the literal maps
    and the gate over all entities, :math:`O(N (L + d) d)`), then one matrix product.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The embedding size :math:`d` (complex for ComplEx).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` literal table.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        base (str, optional): :obj:`"distmult"` or :obj:`"complex"`.
            (default: :obj:`"distmult"`)
        gate (bool, optional): The gated :math:`g` (Eq. 4), else the linear
            :math:`g_{\mathrm{lin}}`. (default: :obj:`True`)
        input_dropout (float, optional): Dropout of the query entity and the relation (the
            authors' command line: 0.2). (default: :obj:`0.2`)
        label_smoothing (float, optional): Of the default :class:`~torch_mmkg.nn.BCELoss`
            (the authors' LiteralE has it commented out). (default: :obj:`0.0`)
        literal_presence (str, optional): :obj:`"auto"`, :obj:`"columns"`, :obj:`"zeros"`
            or :obj:`"entity"`. (default: :obj:`"auto"`)
        literal_normalization (str, optional): :obj:`"minmax"` (the original) or
            :obj:`"none"`, for attribute tables. (default: :obj:`"minmax"`)
        presence_input (bool, optional): Append presence indicators to :math:`\mathbf{l}`
            (not in the original). (default: :obj:`False`)
        mask_missing (bool, optional): Entities without any literal keep their structural
            embedding. (default: :obj:`True`)
        inverse_relations (bool, optional): Learn inverse relations for head queries.
            (default: :obj:`False`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` (the
            original has none). (default: :obj:`None`)
        regularization_weight (float, optional): (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`fused` :math:`[*, P d]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 base: str = 'distmult', gate: bool = True, input_dropout: float = 0.2,
                 label_smoothing: float = 0.0, literal_presence: str = 'auto',
                 literal_normalization: str = 'minmax', presence_input: bool = False,
                 mask_missing: bool = True, inverse_relations: bool = False,
                 regularization: Optional[str] = None, regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None):
        num_nodes, num_relations, hidden_channels = check_sizes(
            self, num_nodes, num_relations, hidden_channels)
        choice(self, 'base', base, tuple(BASES))
        input_dropout = probability(self, 'input_dropout', input_dropout)
        label_smoothing = probability(self, 'label_smoothing', label_smoothing)
        choice(self, 'literal_presence', literal_presence, LITERAL_PRESENCE)
        choice(self, 'literal_normalization', literal_normalization, NORMALIZE)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one literal table "
                             f"(features); without literals use DistMult or ComplEx")
        parts, d = BASES[base], hidden_channels
        representation = LiteralRepresentation(
            num_nodes, parts * d, features, masks, literal_presence, literal_normalization,
            presence_input=presence_input, maps=2 if gate else 1,
            init=xavier_normal_parts(parts), owner=self)
        L = representation.literal_channels
        # W_l of the gate (Linear(L, d, bias=False)), the literal block of W_h (or of W).
        representation.map_bounds = ([1.0 / math.sqrt(L)] if gate else []) + [
            1.0 / math.sqrt(d + L)]
        interaction = DistMultInteraction() if base == 'distmult' else ComplExInteraction()
        super().__init__(num_nodes, num_relations, hidden_channels,
                         QueryDropout(interaction, input_dropout), loss or BCELoss(label_smoothing),
                         inverse_relations=inverse_relations, regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation,
                         fusion=LiteralGate(d, L, parts, gate, mask_missing))
        self.base, self.gate = base, bool(gate)
        self.mask_missing, self.presence_input = bool(mask_missing), bool(presence_input)
        self.input_dropout = input_dropout
        self.reset_parameters()

    def fused(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The fused embeddings :math:`\hat{\mathbf{e}}` :math:`[*, P d]` of :obj:`index`
        (all entities if :obj:`None`)."""
        return self.entity(index)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, base={self.base!r}, '
                f'gate={self.gate}, modalities={self.modalities})')
