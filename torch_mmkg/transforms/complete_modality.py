from typing import Optional, Sequence

import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.completion.base import ModalityCompleter, completed_key
from torch_mmkg.data.mmkg import (_MODALITY_RE, ENTITY, feature_key, get_modalities, mask_key,
                                  validate_mmkg)


@functional_transform('complete_modality')
class CompleteModality(BaseTransform):
    r"""Fills a missing modality of entities from what they have, the modality completion
    (LvMC) of the `"Large Model-Driven Balanced Multimodal Knowledge Graph Completion"
    <https://github.com/guoynow/LBMKGC>`_ paper (functional name:
    :obj:`complete_modality`).

    The :obj:`completer` (a :class:`~torch_mmkg.completion.ModalityCompleter`: the learned
    :class:`~torch_mmkg.completion.TranslatorCompleter`, or the generative
    :class:`~torch_mmkg.completion.DiffusionImageCompleter`) is fit on the graph unless
    :obj:`fit=False`, then fills every entity it can (:meth:`completable`, at most
    :obj:`max_entities` of them, lowest ids first). The completed rows get mask True, so
    every model uses them, and are flagged in ``entity.completed_<target>`` so that they are
    never mistaken for originally present ones
    (:func:`~torch_mmkg.completion.original_mask` recovers the original mask). If the graph
    does not have :obj:`target` yet (e.g. no image at all), the modality is created and
    every completable entity filled. The paper's ablation "w/o LvMC" fills the same rows at
    random instead: :class:`~torch_mmkg.transforms.RandomFillModality`.

    Args:
        target (str): The modality to complete.
        completer (ModalityCompleter): How.
        sources (Sequence[str], optional): The modalities to complete from (default: all
            others; ignored by completers that need none).
        fit (bool, optional): Fit the completer on the graph first. (default: :obj:`True`)
        max_entities (int, optional): Complete at most this many. (default: :obj:`None`)
    """
    def __init__(self, target: str, completer: ModalityCompleter,
                 sources: Optional[Sequence[str]] = None, fit: bool = True,
                 max_entities: Optional[int] = None):
        if not isinstance(target, str) or not _MODALITY_RE.match(target):
            raise ValueError(f"target must be a modality name (lowercase identifier), got "
                             f"{target!r}")
        if not isinstance(completer, ModalityCompleter):
            raise ValueError(f"completer must be a ModalityCompleter, got "
                             f"{type(completer).__name__}")
        self.target = target
        self.completer = completer
        self.sources = None if sources is None else list(sources)
        self.fit = bool(fit)
        self.max_entities = max_entities

    def forward(self, data: HeteroData) -> HeteroData:
        ent = data[ENTITY]
        m = self.target
        new = m not in get_modalities(data)
        if self.fit and not new:
            self.completer.fit(data, m, self.sources)
        rows = self.completer.completable(data, m).cpu().nonzero().view(-1)
        if self.max_entities is not None:
            rows = rows[:self.max_entities]
        values = self.completer.complete(data, m, rows).float()
        if new:
            x = torch.zeros(ent.num_nodes, values.size(1))
            mask = torch.zeros(ent.num_nodes, dtype=torch.bool)
            flag = torch.zeros(ent.num_nodes, dtype=torch.bool)
        else:
            x = ent[feature_key(m)].clone()
            mask = ent[mask_key(m)].clone()
            flag = getattr(ent, completed_key(m), None)
            flag = (torch.zeros_like(mask) if flag is None else flag.clone())
        if values.shape != (rows.numel(), x.size(1)):
            raise ValueError(f"the completer returned {tuple(values.shape)} features for "
                             f"{rows.numel()} entities of '{m}' (width {x.size(1)})")
        if not torch.isfinite(values).all():
            bad = rows[(~torch.isfinite(values)).any(dim=1)]
            raise ValueError(f"the completer returned NaN/Inf features of '{m}' for entities "
                             f"{bad[:5].tolist()}")
        if bool(mask[rows].any()):
            raise ValueError(f"the completer proposed entities that already have '{m}': "
                             f"{rows[mask[rows]][:5].tolist()}")
        x[rows] = values.to(x.dtype)
        mask[rows] = True
        flag[rows] = True
        ent[feature_key(m)] = x
        ent[mask_key(m)] = mask
        ent[completed_key(m)] = flag
        if new:
            data.modalities = get_modalities(data) + [m]
        return validate_mmkg(data)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.target!r}, '
                f'completer={self.completer.__class__.__name__})')
