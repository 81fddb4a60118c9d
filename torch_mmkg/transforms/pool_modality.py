import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import scatter

from torch_mmkg.data.mmkg import _MODALITY_RE, ENTITY, feature_key, get_modalities, mask_key


@functional_transform('pool_modality')
class PoolModality(BaseTransform):
    r"""Pools several instances of a modality per entity (*e.g.*, the embeddings of five images)
    into one feature row per entity (functional name: :obj:`pool_modality`), as in Eq. (1) of the
    `"NativE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper for :obj:`reduce="mean"`.

    The instances are a node type :obj:`data[instance_type]` with features :obj:`x` of shape
    :obj:`[K, F]`, linked to their entities by the edge type
    :obj:`(instance_type, "of", "entity")` whose :obj:`edge_index` holds instance ids in row 0 and
    entity ids in row 1. For an entity :math:`e` with linked instances :math:`\mathcal{I}(e)`:

    .. math::
        \mathbf{x}^{(m)}_e = \bigoplus_{i \in \mathcal{I}(e)} \mathbf{x}_i,

    where :math:`\bigoplus` is the mean, sum or element-wise maximum, computed with
    :func:`torch_geometric.utils.scatter`. The result is stored as :obj:`x_<modality>` with
    :obj:`mask_<modality>` marking the entities with at least one instance (the other rows are
    zeros), :obj:`modality` is appended to :obj:`data.modalities`, and the instance node type and
    every edge type touching it are removed.

    Args:
        instance_type (str): The node type of the instances.
        modality (str): The name of the new modality (a lower-case identifier not yet in the
            graph).
        reduce (str, optional): The pooling: :obj:`"mean"`, :obj:`"sum"` or :obj:`"max"`.
            (default: :obj:`"mean"`)

    Raises:
        ValueError: if the instance node type, its features or the edge type are missing or
            malformed, an instance or entity id is out of range, an instance feature is NaN or
            infinite, the modality exists already, or an entity with instances pools to an
            all-zero row (which the layout does not allow for a present modality).
    """
    def __init__(self, instance_type: str, modality: str, reduce: str = 'mean') -> None:
        if not isinstance(modality, str) or not _MODALITY_RE.match(modality):
            raise ValueError(f"Modality name {modality!r} must be a lower-case identifier "
                             f"([a-z][a-z0-9_]*)")
        if reduce not in ('mean', 'sum', 'max'):
            raise ValueError(f"'reduce' must be 'mean', 'sum' or 'max', got {reduce!r}")
        self.instance_type = instance_type
        self.modality = modality
        self.reduce = reduce

    def forward(self, data: HeteroData) -> HeteroData:
        inst, m = self.instance_type, self.modality
        edge_type = (inst, 'of', ENTITY)
        if inst not in data.node_types:
            raise ValueError(f"The graph has no instance node type '{inst}' (node types: "
                             f"{data.node_types})")
        if edge_type not in data.edge_types:
            raise ValueError(f"The graph has no edge type {edge_type} linking instances to "
                             f"entities (edge types: {data.edge_types})")
        ent = data[ENTITY]
        if m in get_modalities(data) or feature_key(m) in ent or mask_key(m) in ent:
            raise ValueError(f"Modality '{m}' already exists in the graph")

        x = data[inst].get('x')
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"data['{inst}'].x must be a 2-d float tensor, got "
                             f"{getattr(x, 'dtype', type(x).__name__)} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        nonfinite = ~torch.isfinite(x)
        if nonfinite.any():
            row, col = (int(i) for i in nonfinite.nonzero()[0])
            raise ValueError(f"data['{inst}'].x holds {x[row, col].item()} at instance {row}, "
                             f"feature {col}: instance features must be finite")
        edge_index = data[edge_type].get('edge_index')
        if (not isinstance(edge_index, Tensor) or edge_index.dim() != 2
                or edge_index.size(0) != 2 or edge_index.dtype != torch.long):
            raise ValueError(f"data[{edge_type}].edge_index must be a [2, K] torch.long tensor, "
                             f"got {getattr(edge_index, 'dtype', type(edge_index).__name__)} "
                             f"{tuple(getattr(edge_index, 'shape', ()))}")
        num_entities = int(ent.num_nodes)
        for side, what, size in ((0, 'instance', x.size(0)), (1, 'entity', num_entities)):
            ids = edge_index[side]
            bad = (ids < 0) | (ids >= size)
            if bad.any():
                col = int(bad.nonzero()[0, 0])
                raise ValueError(f"data[{edge_type}].edge_index: {what} id {int(ids[col])} at "
                                 f"link {col} is out of range [0, {size})")

        src, dst = edge_index
        out = scatter(x[src], dst, dim=0, dim_size=num_entities, reduce=self.reduce)
        mask = torch.bincount(dst, minlength=num_entities) > 0
        empty = mask & ~(out != 0).any(dim=1)
        if empty.any():
            raise ValueError(f"Entity {int(empty.nonzero()[0, 0])} has instances of '{inst}' but "
                             f"their pooled ({self.reduce}) feature row is all zeros; remove "
                             f"all-zero (placeholder) instances before pooling")

        ent[feature_key(m)] = out
        ent[mask_key(m)] = mask
        data.modalities = get_modalities(data) + [m]
        for et in data.edge_types:
            if inst in (et[0], et[2]):
                del data[et]
        del data[inst]
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.instance_type!r}, {self.modality!r}, '
                f'reduce={self.reduce!r})')
