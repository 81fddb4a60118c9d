r"""Literal tables for the literal-aware models (:class:`~torch_mmkg.nn.LiteralE`,
:class:`~torch_mmkg.nn.KBLN`): per-entity attribute values from the modality features, with
per-attribute presence, and the input dropout of the query of their original code.

A literal table is a modality's :obj:`[N, F]` features. Which of its attributes an entity has is
read in one of three ways (:obj:`literal_presence`):

* :obj:`"columns"`: the table is :obj:`[values | presence]`, :math:`A` value columns followed by
  :math:`A` 0/1 presence columns (this library's numeric literals,
  :func:`~torch_mmkg.datasets.features.numeric.build_numeric_features`: DB15K's 225 DBpedia
  attributes as 450 columns);
* :obj:`"zeros"`: an attribute is missing where its value is exactly :obj:`0` (the original
  code's zero-filled matrix; a true zero then reads as missing);
* :obj:`"entity"`: all :math:`F` columns are present where the entity has the modality (the
  per-entity mask), none elsewhere (a dense vector such as a text embedding);
* :obj:`"auto"` (default): :obj:`"columns"` for a table of that exact layout (even width, the
  right half 0/1, the left half 0 wherever the right half is 0), else :obj:`"entity"`.

Every table also honours the per-entity mask: an entity without the modality has no attribute
of it. A missing attribute's value is :obj:`0`.
"""
import math
from typing import List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.interactions import Interaction
from torch_mmkg.nn.representation import STRUCTURE, EntityRepresentation, register_modalities
from torch_mmkg.nn.validation import choice, owner_name

__all__ = ['LITERAL_PRESENCE', 'LiteralTable', 'presence_layout', 'prepare_literals',
           'LiteralRepresentation', 'QueryDropout', 'xavier_normal_parts']

#: The ways of reading per-attribute presence (see the module docstring).
LITERAL_PRESENCE = ('auto', 'columns', 'zeros', 'entity')
#: The normalisations of attribute tables.
NORMALIZE = ('minmax', 'none')
#: The :math:`\epsilon` of the min-max normalisation, :math:`(x - \min) / (\max - \min +
#: \epsilon)`, as in LiteralE's :obj:`main_literal.py`.
MINMAX_EPS = 1e-8


class LiteralTable(NamedTuple):
    r"""One modality's part of the literal vector: its name, how its presence was read (the
    resolved :obj:`literal_presence`), and its number of attribute columns."""
    name: str
    presence: str
    columns: int


def presence_layout(x: Tensor) -> bool:
    r"""Whether :obj:`x` :obj:`[N, 2A]` is a :obj:`[values | presence]` table: an even width,
    the right half 0/1, the left half 0 wherever the right half is 0."""
    if x.dim() != 2 or x.size(1) % 2:
        return False
    a = x.size(1) // 2
    p = x[:, a:]
    if not bool(((p == 0) | (p == 1)).all()):
        return False
    return bool((x[:, :a][p == 0] == 0).all())


def prepare_literals(owner, features: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                     presence: str = 'auto', literal_normalization: str = 'none'
                     ) -> Tuple[Tensor, Tensor, List[LiteralTable]]:
    r"""The literal values :obj:`[N, A]` and their presence :obj:`[N, A]` (bool) of all tables,
    concatenated in modality order, and the tables.

    Values of missing attributes are :obj:`0`. With :obj:`literal_normalization="minmax"`
    each attribute column of an attribute table (presence :obj:`"columns"` or :obj:`"zeros"`)
    becomes
    :math:`(x - \min) / (\max - \min + 10^{-8})`, the minimum and maximum taken over the
    entities that have the attribute (LiteralE's normalisation, whose original takes them over
    the whole zero-filled column); dense tables (presence :obj:`"entity"`) are left as they
    are, as the original leaves its text-literal vectors.

    Args:
        owner: The model, for error messages.
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F_m]` (validated).
        masks (Mapping[str, Tensor]): Per modality, the bool :obj:`[N]` availability.
        presence (str, optional): See the module docstring. (default: :obj:`"auto"`)
        literal_normalization (str, optional): :obj:`"minmax"` or :obj:`"none"`.
            (default: :obj:`"none"`)
    """
    choice(owner, 'literal_presence', presence, LITERAL_PRESENCE)
    choice(owner, 'literal_normalization', literal_normalization, NORMALIZE)
    values, present, tables = [], [], []
    for m, x in features.items():
        x = x.detach().double()
        mask = masks[m].to(x.device)
        mode = presence
        if mode == 'auto':
            mode = 'columns' if presence_layout(x) else 'entity'
        if mode == 'columns':
            if not presence_layout(x):
                raise ValueError(f"{owner_name(owner)}: literal_presence='columns' reads a "
                                 f"[values | presence] table, but the features of '{m}' "
                                 f"{tuple(x.shape)} are not one (an even width, the right "
                                 f"half 0/1, the left half 0 where the right half is 0)")
            a = x.size(1) // 2
            v, p = x[:, :a], (x[:, a:] > 0.5) & mask[:, None]
        elif mode == 'zeros':
            v, p = x, (x != 0) & mask[:, None]
        else:
            v, p = x, mask[:, None].expand_as(x)
        v = torch.where(p, v, torch.zeros_like(v))
        if literal_normalization == 'minmax' and mode != 'entity':
            lo = torch.where(p, v, torch.full_like(v, math.inf)).amin(dim=0)
            hi = torch.where(p, v, torch.full_like(v, -math.inf)).amax(dim=0)
            has = p.any(dim=0)
            lo, hi = torch.where(has, lo, 0.0), torch.where(has, hi, 0.0)
            v = torch.where(p, (v - lo) / (hi - lo + MINMAX_EPS), torch.zeros_like(v))
        values.append(v)
        present.append(p.clone())
        tables.append(LiteralTable(m, mode, v.size(1)))
    return torch.cat(values, dim=1), torch.cat(present, dim=1), tables


def presence_indicators(present: Tensor, tables: List[LiteralTable]) -> Tensor:
    r"""0/1 indicator columns: one per attribute of an attribute table, one per dense table
    (its entity mask)."""
    cols, start = [], 0
    for table in tables:
        p = present[:, start:start + table.columns]
        cols.append(p if table.presence != 'entity' else p[:, :1])
        start += table.columns
    return torch.cat(cols, dim=1).double()


def xavier_normal_parts(parts: int):
    r"""An in-place initialisation: Xavier-normal on each of the :obj:`parts` column blocks of
    a table (the real and imaginary tables of the original ComplEx code are initialised
    separately)."""
    def init(weight: Tensor):
        with torch.no_grad():
            for block in weight.chunk(parts, dim=-1):
                torch.nn.init.xavier_normal_(block)
    return init


class LiteralRepresentation(EntityRepresentation):
    r"""A structural embedding :math:`\mathbf{e} \in \mathbb{R}^D` and an entity's literal
    vector :math:`\mathbf{l} \in \mathbb{R}^L` (its literal tables, see
    :func:`prepare_literals`, concatenated, and with :obj:`presence_input` their presence
    indicators), as the stack of :math:`1 + K` slots

    .. math::
        [\mathbf{e},\ \mathbf{U}_1 \mathbf{l},\ \ldots,\ \mathbf{U}_K \mathbf{l}]

    with :math:`K` bias-free linear maps :math:`\mathbf{U}_k \in \mathbb{R}^{D \times L}`
    (:obj:`maps`; :math:`K = 0` gives :math:`[\mathbf{e} \,\|\, \mathbf{l}]` as one slot of
    width :math:`D + L` instead) and the mask :math:`[1, k(e), \ldots]`, :math:`k(e)` being
    whether the entity has any literal. The literal tables are frozen buffers.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The width :math:`D` of the structural embedding.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` literal tables.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` availability.
        literal_presence (str, optional): (default: :obj:`"auto"`)
        literal_normalization (str, optional): (default: :obj:`"none"`)
        presence_input (bool, optional): Append presence indicators to :math:`\mathbf{l}`:
            one per attribute of an attribute table, one per dense table (its entity mask).
            (default: :obj:`False`)
        attribute_presence (bool, optional): Append the presence of every column (dense tables
            included) instead. (default: :obj:`False`)
        maps (int, optional): :math:`K`. (default: :obj:`0`)
        map_bounds (Sequence[float], optional): Per map, the bound of its uniform
            initialisation. (default: :math:`1/\sqrt{L}`)
        init (Callable, optional): Initialisation of the structural table.
        owner: The model, for error messages.

    Shapes:
        - **input:** entity indices :math:`[*]` (all entities if :obj:`None`)
        - **output:** stack :math:`[*, 1 + K, D]` (:math:`[*, 1, D + L]` for :math:`K = 0`),
          mask :math:`[*, 1 + K]`
    """
    def __init__(self, num_nodes: int, channels: int, features: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]] = None, literal_presence: str = 'auto',
                 literal_normalization: str = 'none', presence_input: bool = False,
                 attribute_presence: bool = False, maps: int = 0, map_bounds=None, init=None,
                 owner=None):
        torch.nn.Module.__init__(self)
        owner = owner if owner is not None else self
        self.num_nodes = int(num_nodes)
        self.modalities = register_modalities(self, num_nodes, features, masks, (STRUCTURE, ))
        values, present, tables = prepare_literals(
            owner, {m: self.features(m) for m in self.modalities},  # disk: read whole
            {m: getattr(self, f'mask_{m}') for m in self.modalities}, literal_presence,
            literal_normalization)
        self.tables = tables
        self.num_attributes = values.size(1)
        self.presence_input = bool(presence_input)
        self.attribute_presence = bool(attribute_presence)
        literals = values
        if self.attribute_presence:
            literals = torch.cat([values, present.double()], dim=1)
        elif self.presence_input:
            literals = torch.cat([values, presence_indicators(present, tables)], dim=1)
        dtype = getattr(self, f'x_{self.modalities[0]}').dtype
        # Derived from the feature buffers (whose fingerprint covers them): plain tensors that
        # follow the module's device and dtype (_apply), neither in the state dict nor in the
        # fingerprint.
        self._derived = {'literals': literals.to(dtype), 'present': present,
                         'has_literal': present.any(dim=1)}
        self.literal_channels = literals.size(1)
        self.num_maps = int(maps)
        self.structure_channels = int(channels)
        self.channels = int(channels) if maps else int(channels) + self.literal_channels
        self.init = init or torch.nn.init.xavier_normal_
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        self.projection = None
        if self.num_maps:
            self.maps = torch.nn.Parameter(torch.empty(self.num_maps, channels,
                                                       self.literal_channels))
            bounds = map_bounds or [1.0 / math.sqrt(self.literal_channels)] * self.num_maps
            self.map_bounds = [float(b) for b in bounds]
        else:
            self.register_parameter('maps', None)
            self.map_bounds = []

    @property
    def literals(self) -> Tensor:
        r"""The literal vectors :math:`[N, L]` of all entities."""
        return self._derived['literals']

    @property
    def present(self) -> Tensor:
        r"""The presence :math:`[N, A]` (bool) of every attribute column."""
        return self._derived['present']

    @property
    def has_literal(self) -> Tensor:
        r"""Whether each entity has any literal, :math:`[N]`."""
        return self._derived['has_literal']

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._derived = {k: fn(v) for k, v in self._derived.items()}
        return out

    @property
    def slots(self) -> List[str]:
        return [STRUCTURE] + [f'literal_map_{k}' for k in range(self.num_maps)]

    @property
    def costly(self) -> bool:
        return self.num_maps > 0

    def reset_encoders(self):
        if self.maps is not None:
            with torch.no_grad():
                for k, bound in enumerate(self.map_bounds):
                    torch.nn.init.uniform_(self.maps[k], -bound, bound)

    def literal(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The literal vectors :math:`[*, L]` of :obj:`index` (all entities if
        :obj:`None`)."""
        x = self.literals
        return x if index is None else x.index_select(0, index.reshape(-1)).view(
            *index.shape, x.size(1))

    def has_literals(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Whether the entities have any literal, :math:`[*]`."""
        k = self.has_literal
        return k if index is None else k[index]

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        e = self.structural(index)
        lit = self.literal(index).to(e.dtype)
        if not self.num_maps:
            ones = torch.ones(e.shape[:-1] + (1, ), dtype=torch.bool, device=e.device)
            return torch.cat([e, lit], dim=-1).unsqueeze(-2), ones
        mapped = torch.einsum('...l,kdl->...kd', lit, self.maps)
        stack = torch.cat([e.unsqueeze(-2), mapped], dim=-2)
        has = self.has_literals(index)
        mask = torch.cat([torch.ones_like(has).unsqueeze(-1),
                          has.unsqueeze(-1).expand(*has.shape, self.num_maps)], dim=-1)
        return stack, mask

    def extra_repr(self) -> str:
        tables = ', '.join(f'{t.name}: {t.columns} ({t.presence})' for t in self.tables)
        return (f'{self.num_nodes}, {self.structure_channels}, literals=[{tables}], '
                f'literal_channels={self.literal_channels}, maps={self.num_maps}')


def _drop(dropout: torch.nn.Dropout, x: Tensor, columns: Optional[int]) -> Tensor:
    if dropout.p == 0.0 or not dropout.training:
        return x
    if columns is None or columns >= x.size(-1):
        return dropout(x)
    return torch.cat([dropout(x[..., :columns]), x[..., columns:]], dim=-1)


class QueryDropout(Interaction):
    r"""An interaction whose query entity and relation go through dropout in training, the
    candidates not: the input dropout of the ConvE-based code of LiteralE and KBLN
    (:obj:`inp_drop` on the query entity's and the relation's embeddings before the
    one-vs-all product). The query is the head of :meth:`forward` and :meth:`score_tails`, the
    tail of :meth:`score_heads` and the kept entity (anchor) of sampled candidates. With
    :obj:`entity_columns` / :obj:`relation_columns` only the leading columns drop (the
    structural part of a representation that carries literals after it).

    Args:
        base (Interaction): The score function.
        p (float): The dropout rate.
        entity_columns (int, optional): Leading entity columns that drop (default: all).
        relation_columns (int, optional): Leading relation columns that drop (default: all).
    """
    def __init__(self, base: Interaction, p: float, entity_columns: Optional[int] = None,
                 relation_columns: Optional[int] = None):
        super().__init__()
        self.base = base
        self.dropout = torch.nn.Dropout(p)
        self.entity_columns, self.relation_columns = entity_columns, relation_columns
        self.complex_entities = base.complex_entities
        self.uses_masks = base.uses_masks

    def entity_width(self, dim: int) -> int:
        return self.base.entity_width(dim)

    def relation_width(self, dim: int) -> int:
        return self.base.relation_width(dim)

    def reset_parameters(self):
        if hasattr(self.base, 'reset_parameters'):
            self.base.reset_parameters()

    def _query(self, e: Tensor, r: Tensor) -> Tuple[Tensor, Tensor]:
        return (_drop(self.dropout, e, self.entity_columns),
                _drop(self.dropout, r, self.relation_columns))

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        h, r = self._query(h, r)
        return self.base(h, r, t)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        h, r = self._query(h, r)
        return self.base.score_tails(h, r, t_all)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        t, r = self._query(t, r)
        return self.base.score_heads(h_all, r, t)

    def score_gathered(self, anchor: Tensor, r: Tensor, candidates: Tensor,
                       corrupt_head=False) -> Tensor:
        anchor, r = self._query(anchor, r)
        return self.base.score_gathered(anchor, r, candidates, corrupt_head)

    def extra_repr(self) -> str:
        return f'p={self.dropout.p}'
