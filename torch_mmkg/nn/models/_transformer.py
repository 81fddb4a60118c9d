r"""The transformer building blocks that VISTA and MyGO share: entities (and relations) as
token sequences (:class:`TokenRepresentation`), a [CLS] transformer encoder as the fusion
(:class:`TransformerFusion`), a [MASK] transformer decoder as the interaction
(:class:`MaskedDecoderInteraction`, dot product or TuckER head), the model that wires them
(:class:`TransformerKGEModel`) and MyGO's fine-grained contrastive loss
(:func:`info_nce`, :func:`fine_grained_contrastive_loss`).

All transformers are :class:`torch.nn.TransformerEncoder` stacks of post-norm
:class:`torch.nn.TransformerEncoderLayer` (ReLU), built from scratch (no pretrained weights);
modality inputs are frozen buffers.
"""
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.nn.fusion.base import Fusion
from torch_mmkg.nn.interactions import Interaction, TuckERInteraction
from torch_mmkg.nn.interactions.base import gather
from torch_mmkg.nn.kge.base import KGEModel, ScoringCache
from torch_mmkg.nn.regimes import QueryScores
from torch_mmkg.nn.representation import STRUCTURE, EntityRepresentation, register_modalities
from torch_mmkg.nn.validation import choice, positive_int, probability

__all__ = ['TokenRepresentation', 'TransformerFusion', 'MaskedDecoderInteraction',
           'TransformerKGEModel', 'info_nce', 'fine_grained_contrastive_loss',
           'order_instances_by_similarity', 'transformer_encoder', 'check_transformer_args']


def check_transformer_args(owner, hidden_channels: int, num_heads: Optional[int],
                           default_heads: int, layers: Mapping[str, int],
                           dropouts: Mapping[str, float], modality_dropout) -> int:
    r"""Checks a transformer model's hyper-parameters in the name of :obj:`owner` (positive
    layer counts and widths, dropout rates in :math:`[0, 1)`) and returns the number of
    heads: :obj:`num_heads`, which must divide :obj:`hidden_channels`, or by default
    :obj:`default_heads` (the authors'), lowered to the largest divisor of the width below
    it."""
    for name, value in layers.items():
        positive_int(owner, name, value)
    for name, value in dropouts.items():
        probability(owner, name, value)
    if isinstance(modality_dropout, Mapping):
        for m, p in modality_dropout.items():
            probability(owner, f'modality_dropout[{m!r}]', p)
    else:
        probability(owner, 'modality_dropout', modality_dropout)
    if num_heads is None:
        return max(h for h in range(1, default_heads + 1) if hidden_channels % h == 0)
    num_heads = positive_int(owner, 'num_heads', num_heads)
    if hidden_channels % num_heads:
        raise ValueError(f"{type(owner).__name__}: hidden_channels ({hidden_channels}) must "
                         f"be divisible by num_heads ({num_heads})")
    return num_heads


def transformer_encoder(owner, channels: int, num_heads: int, hidden_channels: int,
                        num_layers: int, dropout: float) -> torch.nn.TransformerEncoder:
    r"""A stack of :obj:`num_layers` post-norm :class:`torch.nn.TransformerEncoderLayer`
    (batch first, ReLU), its arguments checked in the name of :obj:`owner`."""
    num_heads = positive_int(owner, 'num_heads', num_heads)
    if channels % num_heads:
        raise ValueError(f"{type(owner).__name__}: hidden_channels ({channels}) must be "
                         f"divisible by num_heads ({num_heads})")
    layer = torch.nn.TransformerEncoderLayer(
        channels, num_heads, positive_int(owner, 'feedforward_channels', hidden_channels),
        probability(owner, 'dropout', dropout), batch_first=True)
    return torch.nn.TransformerEncoder(layer, positive_int(owner, 'num_layers', num_layers),
                                       enable_nested_tensor=False)


def _reset_transformer(encoder: torch.nn.Module):
    for module in encoder.modules():
        if module is encoder:
            continue
        if isinstance(module, torch.nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            module.reset_parameters()


def order_instances_by_similarity(x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Reorders each entity's instances (e.g. images) :obj:`[N, K, F]` by their summed cosine
    similarity to the entity's other present instances, most typical first, as VISTA's code
    does before keeping the first :math:`k`; missing instances (:obj:`mask` :obj:`[N, K]`
    False) go last. Returns the reordered features and mask."""
    u = torch.nn.functional.normalize(x, dim=-1)
    sim = (u @ u.transpose(-1, -2)) * mask[:, None, :].to(x.dtype)
    score = sim.sum(dim=-1).masked_fill(~mask, float('-inf'))
    order = torch.argsort(score, dim=-1, descending=True, stable=True)
    return (torch.gather(x, 1, order[..., None].expand_as(x)), torch.gather(mask, 1, order))


class TokenRepresentation(EntityRepresentation):
    r"""Entities (or relations) as token sequences: the structural token
    :math:`\mathrm{LN}(\mathbf{e}_s) + \mathbf{p}_s` and, per modality :math:`m`, the tokens
    :math:`\mathrm{LN}_m(\mathbf{W}_m \mathbf{x}_{m,k}) + \mathbf{p}_m` of its
    :math:`L_m` inputs :math:`\mathbf{x}_{m,1}, \ldots, \mathbf{x}_{m,L_m}`,

    .. math::
        \mathrm{stack}(e) = [\mathrm{LN}(\mathbf{e}_s) + \mathbf{p}_s,\
        \mathrm{LN}_1(\mathbf{W}_1 \mathbf{x}_{1,1}) + \mathbf{p}_1,\ \ldots,\
        \mathrm{LN}_M(\mathbf{W}_M \mathbf{x}_{M,L_M}) + \mathbf{p}_M],

    with dropout after each layer norm (VISTA's and MyGO's :obj:`emb_dropout`,
    :obj:`vis_dropout`, :obj:`txt_dropout`) and a mask that is True where the input exists.
    The inputs of a modality are either dense features (one vector :obj:`[N, F]` or
    :math:`K` instances :obj:`[N, K, F]` per entity, VISTA's images) or token ids
    :obj:`[N, L]` into a frozen embedding table :obj:`[V, F]` (MyGO's discrete tokens).
    The stack holds tokens, not one slot per modality: :attr:`token_slices` says which rows
    belong to which modality.

    Args:
        num_nodes (int): The number of entities (or relations) :math:`N`.
        channels (int): The token width :math:`d`.
        features (Mapping[str, Tensor], optional): Dense inputs :obj:`[N, F]` or
            :obj:`[N, K, F]`. (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Their availability, :obj:`[N]` or
            :obj:`[N, K]`. (default: all present)
        tokens (Mapping[str, Tensor], optional): Token ids :obj:`[N, L]`. (default:
            :obj:`None`)
        token_masks (Mapping[str, Tensor], optional): Their availability :obj:`[N, L]`.
            (default: all present)
        token_tables (Mapping[str, Tensor], optional): Per token modality, the frozen
            embedding table :obj:`[V, F]`.
        structure_dropout (float, optional): After :math:`\mathrm{LN}(\mathbf{e}_s)`.
            (default: :obj:`0.0`)
        modality_dropout (float or Mapping[str, float], optional): After each
            :math:`\mathrm{LN}_m`; a mapping gives it per modality (others :obj:`0`).
            (default: :obj:`0.0`)
        mask_missing (bool, optional): Mask missing inputs; :obj:`False` attends to every
            stored input, zero rows included. (default: :obj:`True`)
        reserved (Sequence[str], optional): Names no modality may take.

    Shapes:
        - **input:** indices :math:`[*]` (all if :obj:`None`)
        - **output:** stack :math:`[*, T, d]` with :math:`T = 1 + \sum_m L_m`, mask
          :math:`[*, T]`
    """
    def __init__(self, num_nodes: int, channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 tokens: Optional[Mapping[str, Tensor]] = None,
                 token_masks: Optional[Mapping[str, Tensor]] = None,
                 token_tables: Optional[Mapping[str, Tensor]] = None,
                 structure_dropout: float = 0.0,
                 modality_dropout: Union[float, Mapping[str, float]] = 0.0,
                 mask_missing: bool = True, reserved=()):
        torch.nn.Module.__init__(self)
        features, tokens = dict(features or {}), dict(tokens or {})
        token_masks, token_tables = dict(token_masks or {}), dict(token_tables or {})
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        both = sorted(set(features) & set(tokens))
        if both:
            raise ValueError(f"modalities {both} are given both as features and as tokens")
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              tuple(reserved) + (STRUCTURE, ),
                                              instances=True)
        self.token_modalities = self._register_tokens(tokens, token_masks, token_tables,
                                                      tuple(reserved) + (STRUCTURE, ))
        self.modalities = self.modalities + self.token_modalities
        self.mask_missing = bool(mask_missing)
        self.init = torch.nn.init.xavier_uniform_
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        self.projection = None
        widths = {m: getattr(self, f'x_{m}').size(-1) for m in self.modalities}
        self.projections = torch.nn.ModuleDict(
            {m: torch.nn.Linear(f, channels) for m, f in widths.items()})
        self.structure_norm = torch.nn.LayerNorm(channels)
        self.norms = torch.nn.ModuleDict(
            {m: torch.nn.LayerNorm(channels) for m in self.modalities})
        self.structure_dropout = torch.nn.Dropout(
            probability(self, 'structure_dropout', structure_dropout))
        if isinstance(modality_dropout, Mapping):
            rates = {m: float(modality_dropout.get(m, 0.0)) for m in self.modalities}
        else:
            rates = {m: modality_dropout for m in self.modalities}
        self.dropouts = torch.nn.ModuleDict({
            m: torch.nn.Dropout(probability(self, f'modality_dropout[{m!r}]', p))
            for m, p in rates.items()})
        self.position = torch.nn.Parameter(torch.empty(1 + len(self.modalities), channels))
        self.reset_parameters()

    def _register_tokens(self, tokens, token_masks, token_tables, reserved) -> List[str]:
        N = self.num_nodes
        unknown = sorted((set(token_masks) | set(token_tables)) - set(tokens))
        if unknown:
            raise ValueError(f"token masks or tables given for {unknown} without token ids")
        for m, ids in tokens.items():
            if not isinstance(m, str) or not m or '.' in m or m in reserved:
                raise ValueError(f"bad token modality name {m!r}")
            table = token_tables.get(m)
            if (not isinstance(table, Tensor) or table.dim() != 2 or table.size(0) < 1
                    or not table.is_floating_point() or not torch.isfinite(table).all()):
                raise ValueError(f"token_tables['{m}'] must be a finite float [V, F] tensor, "
                                 f"got {getattr(table, 'dtype', type(table).__name__)} "
                                 f"{tuple(getattr(table, 'shape', ()))}")
            if (not isinstance(ids, Tensor) or ids.dim() != 2 or ids.size(0) != N
                    or ids.dtype not in (torch.int32, torch.int64) or ids.size(1) < 1):
                raise ValueError(f"tokens['{m}'] must be an integer [{N}, L] tensor, got "
                                 f"{getattr(ids, 'dtype', type(ids).__name__)} "
                                 f"{tuple(getattr(ids, 'shape', ()))}")
            mask = token_masks.get(m)
            if mask is None:
                mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
            if not isinstance(mask, Tensor) or mask.shape != ids.shape or \
                    mask.dtype != torch.bool:
                raise ValueError(f"token_masks['{m}'] must be a bool {list(ids.shape)} tensor")
            used = ids[mask]
            if used.numel() and (int(used.min()) < 0 or int(used.max()) >= table.size(0)):
                raise ValueError(f"tokens['{m}'] holds ids outside [0, {table.size(0)}) "
                                 f"(the rows of its table)")
            self.register_buffer(f'ids_{m}', torch.where(mask, ids.long(), 0),
                                 persistent=False)
            self.register_buffer(f'x_{m}', table.float(), persistent=False)
            self.register_buffer(f'mask_{m}', mask, persistent=False)
        return list(tokens)

    @property
    def costly(self) -> bool:
        return True

    def num_tokens(self, modality: str) -> int:
        r""":math:`L_m`, the tokens of a modality per entity."""
        if modality in self.token_modalities:
            return int(getattr(self, f'ids_{modality}').size(1))
        x = getattr(self, f'x_{modality}')
        return int(x.size(1)) if x.dim() == 3 else 1

    @property
    def token_slices(self) -> Dict[str, slice]:
        r"""The rows of each modality's tokens in the stack (row 0 is the structure)."""
        out, start = {}, 1
        for m in self.modalities:
            out[m] = slice(start, start + self.num_tokens(m))
            start += self.num_tokens(m)
        return out

    def reset_encoders(self):
        for lin in self.projections.values():
            torch.nn.init.xavier_uniform_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        for norm in [self.structure_norm, *self.norms.values()]:
            norm.reset_parameters()
        torch.nn.init.xavier_uniform_(self.position)

    def inputs(self, modality: str, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The raw inputs :math:`[*, L_m, F_m]` of a modality and their mask
        :math:`[*, L_m]`."""
        def take(x):
            return x if index is None else x.index_select(0, index.reshape(-1)).view(
                *index.shape, *x.shape[1:])
        mask = take(getattr(self, f'mask_{modality}'))
        if modality in self.token_modalities:
            ids = take(getattr(self, f'ids_{modality}'))
            x = getattr(self, f'x_{modality}')[ids]
        else:  # through the base class: disk-backed features read the rows of index
            x = EntityRepresentation.features(self, modality, index)
            if getattr(self, f'x_{modality}').dim() == 2:  # one vector per entity
                x, mask = x.unsqueeze(-2), mask.unsqueeze(-1)
        return x, mask

    def features(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        return self.inputs(modality, index)[0]

    def mask(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        return self.inputs(modality, index)[1]

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        s = self.structural(index)
        parts = [(self.structure_dropout(self.structure_norm(s)) + self.position[0])
                 .unsqueeze(-2)]
        masks = [torch.ones(s.shape[:-1] + (1, ), dtype=torch.bool, device=s.device)]
        for i, m in enumerate(self.modalities):
            x, k = self.inputs(m, index)
            y = self.dropouts[m](self.norms[m](self.projections[m](x.to(s.dtype))))
            parts.append(y + self.position[i + 1])
            masks.append(k if self.mask_missing else torch.ones_like(k))
        return torch.cat(parts, dim=-2), torch.cat(masks, dim=-1)

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.channels}, modalities={self.modalities}, '
                f'tokens={[self.num_tokens(m) for m in self.modalities]}')


class TransformerFusion(Fusion):
    r"""A [CLS] transformer encoder over a token stack: the joint representation is the
    output at the [CLS] token,

    .. math::
        \mathbf{e} = \mathrm{Enc}([\mathrm{CLS},\ \mathrm{stack}])_{\mathrm{CLS}},

    with the missing tokens as the encoder's key padding mask (the [CLS] token is always
    present, so an entity with no modality still has [CLS] and its structure).

    Args:
        channels (int): The width :math:`d`.
        num_heads (int, optional): (default: :obj:`1`)
        hidden_channels (int, optional): The feed-forward width. (default: :obj:`4d`)
        num_layers (int, optional): (default: :obj:`1`)
        dropout (float, optional): Inside the layers. (default: :obj:`0.1`)
        mask_missing (bool, optional): Pass the mask to the encoder. (default: :obj:`True`)
    """
    def __init__(self, channels: int, num_heads: int = 1,
                 hidden_channels: Optional[int] = None, num_layers: int = 1,
                 dropout: float = 0.1, mask_missing: bool = True):
        super().__init__()
        self.channels, self.mask_missing = int(channels), bool(mask_missing)
        self.cls = torch.nn.Parameter(torch.empty(1, channels))
        self.encoder = transformer_encoder(self, channels, num_heads,
                                           hidden_channels or 4 * channels, num_layers,
                                           dropout)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.cls)
        _reset_transformer(self.encoder)

    def encode(self, stack: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r"""The outputs :math:`[*, 1 + T, d]` at every position ([CLS] first)."""
        lead, (T, D) = stack.shape[:-2], stack.shape[-2:]
        x = stack.reshape(-1, T, D)
        n = x.size(0)
        if n == 0:
            return stack.new_zeros(*lead, 1 + T, D)
        seq = torch.cat([self.cls.to(x.dtype).expand(n, 1, D), x], dim=1)
        pad = None
        if mask is not None and self.mask_missing:
            present = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=x.device),
                                 mask.reshape(n, T)], dim=1)
            pad = ~present
        return self.encoder(seq, src_key_padding_mask=pad).view(*lead, 1 + T, D)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        return self.encode(stack, mask)[..., 0, :], None

    def extra_repr(self) -> str:
        return f'{self.channels}'


class MaskedDecoderInteraction(Interaction):
    r"""The [MASK] decoder of VISTA and MyGO: a transformer encoder over the query's entity,
    relation and a [MASK] token, each with its position embedding, whose [MASK] output is
    matched with the candidates,

    .. math::
        [\mathbf{o}_h, \mathbf{o}_r, \mathbf{o}_t] = \mathrm{Dec}([\mathbf{h} + \mathbf{p}_h,\
        \mathbf{r} + \mathbf{p}_r,\ \mathrm{MASK} + \mathbf{p}_t]), \qquad
        f(h, r, t) = g(\mathbf{o}_t, \mathbf{o}_r)^\top \mathbf{t},

    where :math:`g(\mathbf{o}_t, \mathbf{o}_r) = \mathbf{o}_t` (VISTA,
    :obj:`scorer="dot"`) or the TuckER contraction :math:`\mathcal{W} \times_1 \mathbf{o}_t
    \times_2 \mathbf{o}_r` with its batch norms and dropouts (MyGO, :obj:`scorer="tucker"`).
    A head query :math:`(?, r, t)` puts the known entity at the tail position and the
    [MASK] at the head position, :math:`\mathrm{Dec}([\mathrm{MASK} + \mathbf{p}_h,
    \mathbf{r} + \mathbf{p}_r, \mathbf{t} + \mathbf{p}_t])`: the relation representation
    carries that direction as its last entry (0 for tail queries, 1 for head queries,
    :meth:`TransformerKGEModel.relation`), so the relation width is :math:`d + 1`.

    Args:
        channels (int): :math:`d`.
        num_heads (int, optional): (default: :obj:`1`)
        hidden_channels (int, optional): The feed-forward width. (default: :obj:`4d`)
        num_layers (int, optional): (default: :obj:`1`)
        dropout (float, optional): Inside the layers. (default: :obj:`0.1`)
        scorer (str, optional): :obj:`"dot"` or :obj:`"tucker"`. (default: :obj:`"dot"`)
        tucker_dropout (Tuple[float, float, float], optional): TuckER's input, matrix and
            output dropouts. (default: :obj:`(0.3, 0.4, 0.5)`, MyGO's code)
        batch_norm (bool, optional): TuckER's batch norms. (default: :obj:`True`)
    """
    def __init__(self, channels: int, num_heads: int = 1,
                 hidden_channels: Optional[int] = None, num_layers: int = 1,
                 dropout: float = 0.1, scorer: str = 'dot',
                 tucker_dropout: Tuple[float, float, float] = (0.3, 0.4, 0.5),
                 batch_norm: bool = True):
        super().__init__()
        choice(self, 'scorer', scorer, ('dot', 'tucker'))
        self.channels, self.scorer = int(channels), scorer
        self.mask_token = torch.nn.Parameter(torch.empty(1, channels))
        self.position = torch.nn.Parameter(torch.empty(3, channels))  # head, relation, tail
        self.decoder = transformer_encoder(self, channels, num_heads,
                                           hidden_channels or 4 * channels, num_layers,
                                           dropout)
        self.tucker = None
        if scorer == 'tucker':
            drops = [probability(self, 'tucker_dropout', p) for p in tucker_dropout]
            self.tucker = TuckERInteraction(channels, channels, *drops, batch_norm=batch_norm,
                                            dropout_target='matrix', core_init='xavier')
        self.reset_parameters()

    def entity_width(self, dim: int) -> int:
        return self.channels

    def relation_width(self, dim: int) -> int:
        return self.channels + 1

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.mask_token)
        torch.nn.init.xavier_uniform_(self.position)
        _reset_transformer(self.decoder)
        if self.tucker is not None:
            self.tucker.reset_parameters()

    def decode(self, e: Tensor, r: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The decoder's outputs at the [MASK] and at the relation, :math:`[*, d]` each, for
        known entities :obj:`e` :math:`[*, d]` and relations :obj:`r` :math:`[*, d + 1]`
        (broadcast)."""
        D = self.channels
        lead = torch.broadcast_shapes(e.shape[:-1], r.shape[:-1])
        e = e.expand(*lead, D).reshape(-1, D)
        r = r.expand(*lead, D + 1).reshape(-1, D + 1)
        if e.size(0) == 0:
            z = e.new_zeros(*lead, D)
            return z, z
        head = r[:, -1:] > 0.5  # a head query: the known entity is the tail
        p = self.position.to(e.dtype)
        anchor = e + torch.where(head, p[2], p[0])
        masked = self.mask_token.to(e.dtype) + torch.where(head, p[0], p[2])
        seq = torch.stack([anchor, r[:, :-1] + p[1], masked], dim=1)
        out = self.decoder(seq)
        return out[:, 2].view(*lead, D), out[:, 1].view(*lead, D)

    def query(self, e: Tensor, r: Tensor) -> Tensor:
        r""":math:`g(\mathbf{o}_{\mathrm{MASK}}, \mathbf{o}_r)`, :math:`[*, d]`."""
        masked, rel = self.decode(e, r)
        if self.tucker is None:
            return masked
        return self.tucker.query(masked, rel)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (self.query(h, r) * t).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self.query(h, r) @ t_all.t()

    def extra_repr(self) -> str:
        return f'{self.channels}, scorer={self.scorer!r}'


def info_nce(anchor: Tensor, positive: Tensor, temperature: float) -> Tensor:
    r"""InfoNCE of row-aligned views: the cross-entropy of each anchor row against all rows
    of :obj:`positive` by cosine similarity over :obj:`temperature`, its own row being the
    target (MyGO's :obj:`ContrastiveLoss`),

    .. math::
        \mathcal{L} = -\frac{1}{n}\sum_i \log \frac{\exp(\cos(\mathbf{a}_i, \mathbf{b}_i) /
        \tau)}{\sum_j \exp(\cos(\mathbf{a}_i, \mathbf{b}_j) / \tau)}.
    """
    a = torch.nn.functional.normalize(anchor, dim=-1, eps=1e-8)
    b = torch.nn.functional.normalize(positive, dim=-1, eps=1e-8)
    logits = a @ b.t() / temperature
    target = torch.arange(a.size(0), device=a.device)
    return torch.nn.functional.cross_entropy(logits, target)


def _mean(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        return x.mean(dim=-2)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=-2) / w.sum(dim=-2).clamp(min=1.0)


def fine_grained_contrastive_loss(anchor: Tensor, outputs: Tensor, mask: Optional[Tensor],
                                  slices: Mapping[str, slice], temperature: float = 0.5
                                  ) -> Tensor:
    r"""MyGO's fine-grained contrastive loss: the mean of the InfoNCE terms
    (:func:`info_nce`) between the entity embeddings :obj:`anchor` :math:`[n, d]` and views
    of a second, dropout-perturbed encoding of the same entities, the encoder's outputs
    :obj:`outputs` :math:`[n, 1 + T, d]` ([CLS] first, then the token stack): its [CLS]
    output, the mean of all its outputs, and per modality the mean of that modality's
    outputs (:obj:`slices`, rows of the stack),

    .. math::
        \mathcal{L}_{fgc} = \frac{1}{|V|} \sum_{v \in V} \mathrm{InfoNCE}(\mathbf{e},
        \mathbf{e}'_v), \qquad V = \{\mathrm{CLS}, \mathrm{all}\} \cup M.

    With a :obj:`mask` :math:`[n, T]` the means run over the present tokens ([CLS] always
    present), and a modality's term uses only the entities that have one of its tokens (a
    view no entity has is left out); without one every position counts (MyGO's code).
    """
    n = outputs.size(0)
    full = None
    if mask is not None:
        full = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=mask.device), mask], 1)
    terms = [info_nce(anchor, outputs[:, 0], temperature),
             info_nce(anchor, _mean(outputs, full), temperature)]
    for sl in slices.values():
        tok = outputs[:, 1 + sl.start:1 + sl.stop]
        if mask is None:
            terms.append(info_nce(anchor, tok.mean(dim=-2), temperature))
            continue
        k = mask[:, sl]
        rows = k.any(dim=-1)
        if bool(rows.any()):
            terms.append(info_nce(anchor[rows], _mean(tok[rows], k[rows]), temperature))
    return torch.stack(terms).mean()


class TransformerKGEModel(KGEModel):
    r"""The model VISTA and MyGO share: a :class:`TokenRepresentation` of the entities, a
    :class:`TransformerFusion` ([CLS] entity encoder), relation representations and a
    :class:`MaskedDecoderInteraction`, trained 1-N against all entities with a softmax
    cross-entropy.

    **Queries in both directions.** The model has inverse relations in the library's sense:
    relation id :math:`r + R` is the head query :math:`(?, r, t)`, scored as the tail query
    :math:`(t, r + R, ?)`; it is *not* a separate relation embedding but relation :math:`r`
    with the [MASK] at the head position of the decoder, as in the authors' code.
    :meth:`relation` returns the relation representation with the direction as its last
    entry.

    **Re-encoding.** By default (:obj:`encode_all=True`, the authors' code) every 1-N
    training step encodes all :math:`N` entities (:meth:`prepare_scoring`): the cost and
    memory of a step grow with :math:`N`. With :obj:`encode_all=False` (a deviation) a
    training step encodes only the distinct query entities of the batch and takes every
    other candidate from a table of earlier encodings (no gradient through them), refreshed
    row by row as entities are encoded; evaluation always encodes all entities. Negative
    sampling encodes only the entities of the batch in either case.
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 representation: TokenRepresentation, fusion: TransformerFusion,
                 interaction: MaskedDecoderInteraction, loss: torch.nn.Module,
                 relation_representation: Optional[TokenRepresentation] = None,
                 relation_fusion: Optional[TransformerFusion] = None,
                 relation_dropout: float = 0.0, encode_all: bool = True):
        super().__init__(num_nodes, num_relations, hidden_channels, interaction, loss,
                         inverse_relations=True, representation=representation,
                         fusion=fusion, relation_embedding=False)
        self.encode_all = bool(encode_all)
        if relation_representation is None:  # LN(r_s) with dropout (MyGO)
            self.relation_table = torch.nn.Embedding(num_relations, hidden_channels)
            self.relation_norm = torch.nn.LayerNorm(hidden_channels)
            self.relation_dropout = torch.nn.Dropout(
                probability(self, 'relation_dropout', relation_dropout))
        self.relation_representation = relation_representation
        self.relation_fusion = relation_fusion
        self._stale: Optional[Tensor] = None

    @property
    def rel_emb(self) -> torch.nn.Embedding:
        r"""The structural relation table :math:`[R, d]` (one row per relation; the
        direction of a query is not a separate embedding)."""
        if self.relation_representation is not None:
            return self.relation_representation.node_emb
        return self.relation_table

    def reset_parameters(self):
        self.representation.reset_parameters()
        self.fusion.reset_parameters()
        self.interaction.reset_parameters()
        if self.relation_representation is not None:
            self.relation_representation.reset_parameters()
            self.relation_fusion.reset_parameters()
        else:
            torch.nn.init.xavier_uniform_(self.relation_table.weight)
            self.relation_norm.reset_parameters()
        self._stale = None

    def encode_relations(self, index: Tensor) -> Tensor:
        r"""The relation representations :math:`[*, d]` of relation ids in :math:`[0, R)`:
        :math:`\mathrm{Enc}_R([\mathrm{CLS}, \ldots])_{\mathrm{CLS}}` with a relation
        encoder, else :math:`\mathrm{LN}(\mathbf{r}_s)` with dropout."""
        if self.relation_representation is None:
            return self.relation_dropout(self.relation_norm(self.relation_table(index)))
        stack, mask = self.relation_representation(index)
        return self.relation_fusion(stack, mask)[0]

    def relation(self, rel_type: Tensor) -> Tensor:
        R = self.num_relations
        head = rel_type >= R
        base = torch.where(head, rel_type - R, rel_type)
        uniq, inv = torch.unique(base, return_inverse=True)
        r = self.encode_relations(uniq)[inv]
        return torch.cat([r, head.unsqueeze(-1).to(r.dtype)], dim=-1)

    # The option of re-encoding only the batch's entities ######################################

    def _candidate_table(self, entity_index: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The all-entity table of a training step with :obj:`encode_all=False`: earlier
        encodings, the batch's distinct entities encoded now (with gradient)."""
        ids = torch.unique(entity_index)
        stack, mask = self.representation(ids)
        fresh = self.fusion(stack, mask)[0]
        stale = self._stale
        if stale is None or stale.device != fresh.device or stale.dtype != fresh.dtype:
            with torch.no_grad():
                stale = self.fusion(*self.representation(None))[0]
        stale = stale.detach().index_copy(0, ids, fresh.detach())
        self._stale = stale
        return stale.index_copy(0, ids, fresh), ids

    def score_queries(self, entity_index: Tensor, rel_type: Tensor) -> QueryScores:
        if self.encode_all or not self.training:
            return super().score_queries(entity_index, rel_type)
        table, _ = self._candidate_table(entity_index)
        cache = ScoringCache(table=table, candidates=table)
        e, r = gather(table, entity_index), self.relation(rel_type)
        views = self.interaction.view_logits(e, r, table)
        return QueryScores(views, dict(self.query_terms(cache, entity_index)),
                           {'entity_index': entity_index})

    def load_state_dict(self, *args, **kwargs):
        self._stale = None
        return super().load_state_dict(*args, **kwargs)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities})')
