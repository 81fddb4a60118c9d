r"""Entity representations: a structural embedding and per-modality features, each through
its encoder, as a stack :math:`[*, S, D]` with its availability mask :math:`[*, S]`."""
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.data.feature_store import (DEFAULT_CHUNK_BYTES, get_full_read_limit,
                                           is_disk_features)
from torch_mmkg.nn.fusion.projection import ModalityProjection

__all__ = ['EntityRepresentation', 'ExpertRepresentation', 'register_modalities', 'STRUCTURE']

#: The name of the structural slot.
STRUCTURE = 'structure'


def register_modalities(module: torch.nn.Module, num_nodes: int,
                        features: Mapping[str, Tensor],
                        masks: Optional[Mapping[str, Tensor]] = None,
                        reserved: Sequence[str] = (), trainable: bool = False,
                        instances: bool = False) -> List[str]:
    r"""Validates per-modality entity features :obj:`[N, F_m]` and bool masks :obj:`[N]` and
    registers them on :obj:`module` as :obj:`x_{m}` (a non-persistent buffer, or with
    :obj:`trainable` a parameter initialised from the features) and the non-persistent
    buffer :obj:`mask_{m}`; returns the modality names in order. With :obj:`instances` a
    modality may also hold :math:`K` float vectors per entity, :obj:`[N, K, F_m]` with a mask
    :obj:`[N, K]` (e.g. several images). Every error names the modality and what is wrong
    with it.

    Disk-backed features (:class:`~torch_mmkg.data.feature_store.DiskFeatures`, on an
    :class:`EntityRepresentation` only) stay on disk: :obj:`x_{m}` is then a plain attribute
    holding them (not a buffer, not moved by :meth:`~torch.nn.Module.to`), read through
    :meth:`EntityRepresentation.features`, their finiteness checked by one streamed pass
    (cached). With :obj:`trainable` they become an in-memory parameter (read whole, within
    the full-read limit)."""
    masks = dict(masks or {})
    names = list(features)
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise ValueError(f"masks given for modalities {unknown} without features (have "
                         f"{names})")
    for m, x in features.items():
        if not isinstance(m, str) or not m or '.' in m:
            raise ValueError(f"modality names must be non-empty strings without '.', "
                             f"got {m!r}")
        if m in reserved:
            raise ValueError(f"'{m}' is a reserved name here ({list(reserved)}); rename "
                             f"that modality")
        if is_disk_features(x):
            _register_disk_features(module, num_nodes, m, x, masks.get(m), trainable,
                                    instances)
            continue
        if instances:
            if (not isinstance(x, Tensor) or x.dim() not in (2, 3) or x.size(0) != num_nodes
                    or not x.is_floating_point()):
                raise ValueError(f"features of '{m}' must be a float [{num_nodes}, F] tensor "
                                 f"(one vector per entity) or [{num_nodes}, K, F] (K "
                                 f"instances, e.g. images, per entity), got "
                                 f"{getattr(x, 'dtype', type(x).__name__)} "
                                 f"{tuple(getattr(x, 'shape', ()))}")
            if x.size(-1) < 1 or (x.dim() == 3 and x.size(1) < 1):
                raise ValueError(f"features of '{m}' are empty: {tuple(x.shape)}")
        else:
            if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != num_nodes:
                raise ValueError(f"features of '{m}' must be [{num_nodes}, F], got "
                                 f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
            if x.size(1) < 1:
                raise ValueError(f"features of '{m}' have no columns")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().view(-1)
            raise ValueError(f"features of '{m}' contain NaN or Inf "
                             f"({'entities' if instances else 'rows'} "
                             f"{bad[:5].tolist()}{'...' if bad.numel() > 5 else ''})")
        mask = masks.get(m)
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        if (not isinstance(mask, Tensor) or mask.shape != x.shape[:-1]
                or mask.dtype != torch.bool):
            raise ValueError(f"mask of '{m}' must be a {list(x.shape[:-1])} bool tensor, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} "
                             f"{tuple(getattr(mask, 'shape', ()))}")
        if trainable:
            module.register_parameter(f'x_{m}', torch.nn.Parameter(x.detach().float().clone()))
        else:
            module.register_buffer(f'x_{m}', x.float(), persistent=False)
        module.register_buffer(f'mask_{m}', mask.to(x.device), persistent=False)
    return names


def _register_disk_features(module: torch.nn.Module, num_nodes: int, m: str, x,
                            mask: Optional[Tensor], trainable: bool, instances: bool):
    r"""The disk-backed branch of :func:`register_modalities`."""
    if not isinstance(module, EntityRepresentation):
        raise ValueError(f"disk-backed features of '{m}' ({x.path}) are read through an "
                         f"EntityRepresentation; {type(module).__name__} is none (load them "
                         f"into memory with torch_mmkg.data.load_features)")
    dims = (2, 3) if instances else (2, )
    if x.dim() not in dims or x.size(0) != num_nodes:
        want = (f"[{num_nodes}, F] or [{num_nodes}, K, F]" if instances
                else f"[{num_nodes}, F]")
        raise ValueError(f"features of '{m}' must be {want}, got {tuple(x.shape)} (in "
                         f"{x.path})")
    if not x.is_finite():
        (row, *_), _ = x.scan().nonfinite
        raise ValueError(f"features of '{m}' contain NaN or Inf "
                         f"({'entities' if instances else 'rows'} [{row}]...) (in {x.path})")
    if mask is None:
        mask = torch.ones(tuple(x.shape[:-1]), dtype=torch.bool)
    if (not isinstance(mask, Tensor) or mask.shape != x.shape[:-1]
            or mask.dtype != torch.bool):
        raise ValueError(f"mask of '{m}' must be a {list(x.shape[:-1])} bool tensor, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{tuple(getattr(mask, 'shape', ()))}")
    name = f'x_{m}'
    for table in (module._buffers, module._parameters):
        table.pop(name, None)
    if trainable:
        value = x.read_all(what=f"{module._owner()}: trainable features of '{m}' (an "
                                f"in-memory parameter [N, F])",
                           hint="Keep them frozen on disk (trainable_features=False / "
                                "finetune_features=False), or raise the limit if the "
                                "parameter fits in memory")
        module.register_parameter(name, torch.nn.Parameter(value))
    else:
        object.__setattr__(module, name, x)
    module.register_buffer(f'mask_{m}', mask, persistent=False)
    if module.__dict__.get('_feature_probe') is None:
        # follows the module's device and dtype (_apply): where and as what rows are read
        module.__dict__['_feature_probe'] = torch.zeros((), dtype=torch.float32,
                                                        device=mask.device)


def _take(x: Tensor, index: Optional[Tensor]) -> Tensor:
    if index is None:
        return x
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


class EntityRepresentation(torch.nn.Module):
    r"""An entity's representations as a stack: a learnable structural embedding
    :math:`\mathbf{e}_s \in \mathbb{R}^D` (slot 0) and, per modality :math:`m`, its features
    :math:`\mathbf{x}_m` through an encoder :math:`P_m` (slot :math:`m`),

    .. math::
        \mathrm{stack}(e) = [\mathbf{e}_s,\ P_1(\mathbf{x}_1),\ \ldots,\ P_M(\mathbf{x}_M)]
        \in \mathbb{R}^{S \times D}, \qquad \mathrm{mask}(e) = [1,\ k_1(e),\ \ldots,\
        k_M(e)],

    where :math:`k_m(e)` says whether entity :math:`e` has modality :math:`m`. Features are
    frozen buffers, or (:obj:`trainable_features`) a learnable table initialised from them,
    as the authors of several methods do. The encoder is a two-layer MLP
    (:obj:`projection_layers=2`), a linear map (:obj:`1`, with or without bias), or the
    identity (:obj:`0`, features of width :math:`D`).

    The representation, not the model, de-duplicates the entities a batch touches
    (:meth:`unique`): encoders run once per distinct entity.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The width :math:`D` of every slot.
        features (Mapping[str, Tensor], optional): Per modality, the :obj:`[N, F_m]`
            features. (default: :obj:`None`, a structural representation)
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        structure (bool, optional): Include the structural slot. (default: :obj:`True`)
        projection_layers (int, optional): :obj:`2`, :obj:`1` or :obj:`0` (identity).
            (default: :obj:`2`)
        projection_bias (bool, optional): Bias of a one-layer projection.
            (default: :obj:`True`)
        trainable_features (bool, optional): (default: :obj:`False`)
        init (Callable, optional): Initialisation of the structural table, in place.
            (default: :func:`torch.nn.init.xavier_uniform_`)
        sparse (bool, optional): Sparse gradients of the structural table.
            (default: :obj:`False`)
        reserved (Sequence[str], optional): Names no modality may take.
        trainable_features (bool, optional): The feature tables are parameters, initialised
            from the (normalised) features and fine-tuned with the model (MoMoK's code);
            else frozen buffers. (default: :obj:`False`)
        expert_std (float, optional): The experts' initial weight standard deviation
            (:class:`~torch_mmkg.nn.fusion.ModalityExperts`). (default: :obj:`None`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all entities if :obj:`None`)
        - **output:** stack :math:`[*, S, D]`, mask :math:`[*, S]`
    """
    #: Whether query entities are represented in the context of the query relation
    #: (:meth:`forward` with :obj:`rel_type`), candidates without.
    relation_aware_queries: bool = False
    #: Whether the rows of :meth:`forward` of all entities are those of any subset (no
    #: computation across entities): the all-entity pass may then run in entity chunks
    #: (:meth:`forward_chunked`).
    rowwise: bool = True
    #: The model this representation belongs to, for error messages (set by
    #: :class:`~torch_mmkg.nn.KGEModel`).
    owner_name: Optional[str] = None

    def __init__(self, num_nodes: int, channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None, structure: bool = True,
                 projection_layers: int = 2, projection_bias: bool = True,
                 trainable_features: bool = False,
                 init: Optional[Callable[[Tensor], None]] = None, sparse: bool = False,
                 reserved: Sequence[str] = ()):
        super().__init__()
        features = dict(features or {})
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        if not structure and not features:
            raise ValueError("an entity representation needs the structural slot or at "
                             "least one modality")
        if projection_layers not in (0, 1, 2):
            raise ValueError(f"projection_layers must be 0, 1 or 2, got {projection_layers}")
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              tuple(reserved) + (STRUCTURE, ),
                                              trainable_features)
        if projection_layers == 0:
            bad = {m: x.size(1) for m, x in features.items() if x.size(1) != channels}
            if bad:
                raise ValueError(f"projection_layers=0 feeds features unchanged: they must "
                                 f"have width {channels}, got {bad}")
        self.init = init or torch.nn.init.xavier_uniform_
        self.node_emb = (torch.nn.Embedding(num_nodes, channels, sparse=sparse)
                         if structure else None)
        self.projection = (ModalityProjection({m: x.size(1) for m, x in features.items()},
                                              channels, num_layers=projection_layers,
                                              bias=projection_bias)
                           if features and projection_layers else None)

    @property
    def slots(self) -> List[str]:
        r"""The slot names: :obj:`"structure"` (if any), then the modalities."""
        return ([STRUCTURE] if self.node_emb is not None else []) + list(self.modalities)

    @property
    def num_slots(self) -> int:
        return len(self.slots)

    @property
    def costly(self) -> bool:
        r"""Whether computing a row costs more than a lookup (an encoder runs): batches are
        then computed on their distinct entities."""
        return self.projection is not None

    def reset_structure(self):
        r"""Re-initialises the structural table."""
        if self.node_emb is not None:
            self.init(self.node_emb.weight)

    def reset_encoders(self):
        r"""Re-initialises the encoders."""
        if self.projection is not None:
            self.projection.reset_parameters()

    def reset_parameters(self):
        self.reset_structure()
        self.reset_encoders()

    def features(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The features :math:`[*, F_m]` of :obj:`index` (all entities if :obj:`None`).

        Disk-backed features are read: the distinct rows of :obj:`index`, or every row (only
        within the full-read limit, else a
        :class:`~torch_mmkg.data.feature_store.FeaturesTooLargeError` naming the model), on
        the module's device and in its dtype."""
        x = getattr(self, f'x_{modality}')
        if is_disk_features(x):
            return self._read_features(modality, x, index)
        return _take(x, index)

    # Disk-backed features ###################################################################

    def _owner(self) -> str:
        return self.owner_name or type(self).__name__

    def _read_features(self, modality: str, x, index: Optional[Tensor]) -> Tensor:
        probe = self.__dict__['_feature_probe']
        if index is None:
            out = x.read_all(
                device=probe.device,
                what=f"{self._owner()} needs the '{modality}' features of every entity at "
                     f"once here (1-N training, 1-vs-all scoring with gradient, or a "
                     f"precomputation over all entities)",
                hint="Train it with negative sampling (regime='negative_sampling'), where a "
                     "batch reads the rows it touches, and evaluate without gradient "
                     "(RankingEvaluator / prepare_scoring under torch.no_grad() stream "
                     "entity chunks); or, if the matrix fits in memory, raise the limit "
                     "(torch_mmkg.data.feature_store.set_full_read_limit) or load it "
                     "(torch_mmkg.data.load_features)")
        else:
            out = x.rows(index, device=probe.device)
        if self.__dict__.get('_feature_transforms', {}).get(modality) == 'l2':
            out = torch.nn.functional.normalize(out, dim=-1)
        return out if out.dtype == probe.dtype else out.to(probe.dtype)

    @property
    def disk_modalities(self) -> List[str]:
        r"""The modalities whose features are on disk."""
        return [m for m in self.modalities
                if is_disk_features(self.__dict__.get(f'x_{m}'))]

    @property
    def disk_backed(self) -> bool:
        r"""Whether some features are on disk (read row by row)."""
        return bool(self.disk_modalities)

    def disk_feature_bytes(self) -> int:
        r"""What reading every disk-backed feature matrix at once would allocate."""
        return sum(self.__dict__[f'x_{m}'].nbytes for m in self.disk_modalities)

    def streams(self) -> bool:
        r"""Whether an all-entity pass without gradient runs in entity chunks
        (:meth:`forward_chunked`): some features on disk, more of them than the full-read
        limit, and a :attr:`rowwise` representation."""
        return self.disk_backed and self.rowwise and self._over_read_limit()

    def _over_read_limit(self) -> bool:
        limit = get_full_read_limit()
        return limit is not None and self.disk_feature_bytes() > limit

    def forward_chunked(self, chunk_size: Optional[int] = None
                        ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        r""":meth:`forward_with_extras` of every entity, computed on consecutive chunks of
        :obj:`chunk_size` entities (by default about 16 MiB of disk-backed features each) and
        concatenated: the all-entity pass of evaluation with features on disk, whose memory is
        bounded by the chunk and the output, not by the features. Call it without gradient
        (with gradient every chunk's features would be kept for the backward pass)."""
        if chunk_size is None:
            row = sum(self.__dict__[f'x_{m}'].row_bytes for m in self.disk_modalities) or 1
            chunk_size = max(1, DEFAULT_CHUNK_BYTES // row)
        device = self.__dict__['_feature_probe'].device if self.disk_backed else None
        parts = []
        for start in range(0, self.num_nodes, int(chunk_size)):
            idx = torch.arange(start, min(self.num_nodes, start + int(chunk_size)),
                               device=device)
            parts.append(self.forward_with_extras(idx))
        extras = {k: torch.cat([p[2][k] for p in parts]) for k in parts[0][2]}
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), extras)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        probe = self.__dict__.get('_feature_probe')
        if probe is not None:
            self.__dict__['_feature_probe'] = fn(probe)
        return out

    def mask(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The availability :math:`[*]` of modality :obj:`modality`."""
        return _take(getattr(self, f'mask_{modality}'), index)

    def structural(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The structural embeddings :math:`[*, D]` of :obj:`index`."""
        if self.node_emb is None:
            raise RuntimeError("this representation has no structural slot")
        return self.node_emb.weight if index is None else self.node_emb(index)

    def encode(self, index: Optional[Tensor] = None) -> Dict[str, Tensor]:
        r"""The encoded modalities :math:`[*, D]` of :obj:`index`, by modality."""
        feats = {m: self.features(m, index) for m in self.modalities}
        return self.projection(feats) if self.projection is not None else feats

    def forward_with_extras(self, index: Optional[Tensor] = None,
                            rel_type: Optional[Tensor] = None
                            ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        r"""The stack, the mask and what else the encoders computed on the way, in one pass
        (e.g. the expert outputs that MoMoK's ExID loss reads); none by default."""
        stack, mask = self(index, rel_type)
        return stack, mask, {}

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The stack :math:`[*, S, D]` and mask :math:`[*, S]` of :obj:`index` (all
        entities if :obj:`None`); :obj:`rel_type` (the query relation) is used by
        representations with :attr:`relation_aware_queries` only."""
        slots, masks = [], []
        if self.node_emb is not None:
            s = self.structural(index)
            slots.append(s)
            masks.append(torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device))
        enc = self.encode(index) if self.modalities else {}
        for m in self.modalities:
            slots.append(enc[m])
            masks.append(self.mask(m, index))
        if len(slots) == 1:  # a view, not a copy of the table
            return slots[0].unsqueeze(-2), masks[0].unsqueeze(-1)
        return torch.stack(slots, dim=-2), torch.stack(masks, dim=-1)

    def unique(self, *indices: Tensor) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
        r"""The stack and mask of the distinct entities of :obj:`indices` and, per index
        tensor, the rows of its entities in them; every entity when the batch touches about
        as many ids as there are (or the representation is a lookup), the indices then
        returned unchanged. With features on disk: every entity only when the batch touches
        as many ids and all features are within the full-read limit, else the distinct
        entities (a lookup too), so that a batch never reads rows it does not touch."""
        total = sum(i.numel() for i in indices)
        if self.disk_backed:  # all rows only within the full-read limit, else the distinct
            whole = total >= self.num_nodes and not self._over_read_limit()
        else:
            whole = not self.costly or total >= self.num_nodes
        if whole:
            stack, mask = self(None)
            return stack, mask, indices
        flat = torch.cat([i.reshape(-1) for i in indices])
        uniq, inv = torch.unique(flat, return_inverse=True)
        stack, mask = self(uniq)
        out, start = [], 0
        for i in indices:
            out.append(inv[start:start + i.numel()].view(i.shape))
            start += i.numel()
        return stack, mask, tuple(out)

    def extra_repr(self) -> str:
        return f'{self.num_nodes}, {self.channels}, slots={self.slots}'


class ExpertRepresentation(EntityRepresentation):
    r"""Relation-guided modality knowledge experts (ReMoKE, Eq. 2 of the `"Multiple Heads
    are Better than One: Mixture of Modality Knowledge Experts for Entity Representation
    Learning" <https://arxiv.org/abs/2405.16869>`_ paper): every slot :math:`m` (the
    structural embedding and each feature modality, features :math:`L_2`-normalised) goes
    through :math:`K` experts mixed by a noisy gate
    (:class:`~torch_mmkg.nn.fusion.ModalityExperts`), at the relation-aware temperature
    :math:`\sigma(\varepsilon_r)` for the query entity of :math:`(e, r, ?)`
    (:attr:`relation_aware_queries`) and at temperature 1 for candidates,

    .. math::
        \hat{\mathbf{e}}_{m,r} = \sum_{i=1}^{K} G_i(\mathcal{V}_{m,i}, r)\,
        \mathcal{V}_{m,i}.

    Entities lacking a modality (with :obj:`mask_missing`) skip its experts and get zeros in
    its slot (which a masked scorer never reads).

    Args:
        num_nodes (int): The number of entities.
        channels (int): The width :math:`d` of every slot.
        features (Mapping[str, Tensor], optional): Per modality, :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` availability.
        slots (Sequence[str], optional): The slots computed, among :obj:`"structure"` and
            the modalities, in that order. (default: all)
        num_relation_temperatures (int, optional): Relation ids (with inverses) that get a
            temperature :math:`\varepsilon_r`; :obj:`None` for temperature 1 everywhere.
        num_experts (int, optional): :math:`K`. (default: :obj:`3`)
        noisy_gating (bool, optional): (default: :obj:`True`)
        noise_epsilon (float, optional): (default: :obj:`0.01`)
        mask_missing (bool, optional): (default: :obj:`True`)
        normalize_features (bool, optional): (default: :obj:`True`)
        reserved (Sequence[str], optional): Names no modality may take.
        trainable_features (bool, optional): The feature tables are parameters, initialised
            from the (normalised) features and fine-tuned with the model (MoMoK's code);
            else frozen buffers. (default: :obj:`False`)
        expert_std (float, optional): The experts' initial weight standard deviation
            (:class:`~torch_mmkg.nn.fusion.ModalityExperts`). (default: :obj:`None`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all if :obj:`None`), relation ids
          :math:`[*]` for query entities
        - **output:** stack :math:`[*, S, d]`, mask :math:`[*, S]`; :meth:`forward_with_extras`
          also the expert outputs :math:`[*, S, K, d]` and gates :math:`[*, S, K]`
    """
    relation_aware_queries = True

    def __init__(self, num_nodes: int, channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 slots: Optional[Sequence[str]] = None,
                 num_relation_temperatures: Optional[int] = None, num_experts: int = 3,
                 noisy_gating: bool = True, noise_epsilon: float = 1e-2,
                 mask_missing: bool = True, normalize_features: bool = True,
                 reserved: Sequence[str] = (), trainable_features: bool = False,
                 expert_std: Optional[float] = None):
        from torch_mmkg.nn.fusion.experts import ModalityExperts
        torch.nn.Module.__init__(self)
        features = dict(features or {})
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        self.trainable_features = bool(trainable_features)
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              tuple(reserved) + (STRUCTURE, ),
                                              trainable=self.trainable_features)
        if normalize_features:
            with torch.no_grad():
                for m in self.modalities:
                    x = getattr(self, f'x_{m}')
                    if is_disk_features(x):  # normalised as its rows are read
                        self.__dict__.setdefault('_feature_transforms', {})[m] = 'l2'
                        continue
                    normed = torch.nn.functional.normalize(x, dim=-1)
                    if self.trainable_features:
                        x.copy_(normed)
                    else:
                        self._buffers[f'x_{m}'] = normed
        self.init = torch.nn.init.xavier_normal_
        self.mask_missing = bool(mask_missing)
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        names = [STRUCTURE] + self.modalities
        self.expert_slots = [s for s in names if slots is None or s in slots]
        self.num_experts = int(num_experts)
        self.experts = torch.nn.ModuleDict({
            m: ModalityExperts(channels if m == STRUCTURE else features[m].size(1), channels,
                               num_experts, noisy_gating, noise_epsilon, expert_std)
            for m in self.expert_slots
        })
        self.projection = None
        if num_relation_temperatures:
            self.rel_temperature = torch.nn.Parameter(torch.empty(num_relation_temperatures))
        else:
            self.register_parameter('rel_temperature', None)

    @property
    def slots(self) -> List[str]:
        return list(self.expert_slots)

    @property
    def costly(self) -> bool:
        return True

    def reset_encoders(self):
        if self.rel_temperature is not None:
            torch.nn.init.zeros_(self.rel_temperature)  # sigma(0) = 0.5
        for module in self.experts.values():
            module.reset_parameters()

    def slot_input(self, slot: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The input :math:`[*, F]` of a slot's experts: the structural embedding or the
        (normalised) features."""
        if slot == STRUCTURE:
            return self.structural(index)
        return self.features(slot, index)

    def slot_mask(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Which slots the entities have, :math:`[*, S]` (all True for the structure, and
        everywhere with :obj:`mask_missing=False`)."""
        shape = (self.num_nodes, ) if index is None else tuple(index.shape)
        cols = []
        for m in self.expert_slots:
            if m == STRUCTURE or not self.mask_missing:
                cols.append(torch.ones(shape, dtype=torch.bool,
                                       device=self.node_emb.weight.device))
            else:
                cols.append(self.mask(m, index))
        return torch.stack(cols, dim=-1)

    def temperature(self, rel_type: Optional[Tensor]) -> Optional[Tensor]:
        r""":math:`\sigma(\varepsilon_r)` of relation ids (:obj:`None` for candidates or
        without relation temperatures)."""
        if rel_type is None or self.rel_temperature is None:
            return None
        return torch.sigmoid(self.rel_temperature[rel_type])

    def forward_with_extras(self, index: Optional[Tensor] = None,
                            rel_type: Optional[Tensor] = None, noise: Optional[bool] = None
                            ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        tau = self.temperature(rel_type)
        mask = self.slot_mask(index)
        outs = []
        for s, m in enumerate(self.expert_slots):
            x, present = self.slot_input(m, index), mask[..., s]
            if m == STRUCTURE or not self.mask_missing or bool(present.all()):
                outs.append(self.experts[m](x, tau, noise))
                continue
            # Only the entities that have the modality go through its experts (the others
            # are masked everywhere): zero embeddings and gates stand in for them.
            sub = self.experts[m](x[present], None if tau is None else tau[present], noise)
            full = []
            for part in sub:
                out = part.new_zeros(present.shape + part.shape[1:])
                out[present] = part
                full.append(out)
            outs.append(full)
        return (torch.stack([o[0] for o in outs], dim=-2), mask,
                {'experts': torch.stack([o[1] for o in outs], dim=-3),
                 'gates': torch.stack([o[2] for o in outs], dim=-2)})

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        stack, mask, _ = self.forward_with_extras(index, rel_type)
        return stack, mask

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.channels}, slots={self.slots}, '
                f'num_experts={self.num_experts}')
