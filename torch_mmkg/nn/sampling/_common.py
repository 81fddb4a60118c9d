r"""What the negative-sampling regimes of this package share: checks, the scoring of corrupted
triples whose corrupted entity is given as a stack of representations (a hybrid entity, or a
soft combination of entities), and building a model by name."""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives


def model_device_dtype(model) -> Tuple[torch.device, torch.dtype]:
    r"""The device and floating dtype of a model's parameters."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device('cpu'), torch.get_default_dtype()


def check_stacks(owner: str, model, need_modalities: bool = False):
    r"""Raises a clear error for a model without the stack interface
    (:meth:`~torch_mmkg.nn.KGEModel.modality_stack`,
    :meth:`~torch_mmkg.nn.KGEModel.score_stacks`), or, with :obj:`need_modalities`, without a
    structural slot followed by at least one modality slot."""
    rep = getattr(model, 'representation', None)
    if rep is None or not hasattr(model, 'score_stacks') or not hasattr(model, 'modality_stack'):
        raise ValueError(f"{owner} scores entities through their representation stacks "
                         f"(modality_stack and score_stacks of torch_mmkg.nn.KGEModel); "
                         f"{type(model).__name__} has none")
    if getattr(model.interaction, 'uses_masks', False):
        raise ValueError(f"{owner}: {type(model).__name__}'s scorer judges views by their "
                         f"masks (an ensemble), which score_stacks does not pass; use a "
                         f"model with one scorer")
    if need_modalities:
        slots = list(getattr(rep, 'slots', []))
        if len(slots) < 2 or slots[0] != 'structure':
            raise ValueError(f"{owner} swaps an entity's modality slots while keeping its "
                             f"structural one: it needs a model whose representation stack "
                             f"is a structural slot followed by at least one modality slot; "
                             f"{type(model).__name__} has slots {slots}")


def side_mask(negatives: Negatives) -> Tensor:
    r"""The :obj:`[B, K]` head-corruption mask of :obj:`negatives`."""
    return negatives.side_mask()


def score_corrupted(model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    corrupt_head: Tensor, cand_stack: Tensor, cand_mask: Tensor) -> Tensor:
    r"""The scores :math:`[B, K]` of the corrupted triples :math:`(e', r, t)` (where
    :obj:`corrupt_head`) or :math:`(h, r, e')` whose corrupted entity :math:`e'` is given as
    a stack :obj:`cand_stack` :math:`[B, K, S, D]` with its mask :math:`[B, K, S]`, by the
    model's :meth:`~torch_mmkg.nn.KGEModel.score_stacks`. With inverse relations, a head
    corruption is scored as :meth:`~torch_mmkg.nn.KGEModel.score_batch` scores it, as the
    tail of the inverse relation, :math:`(t, r + R, e')`."""
    B, K = cand_stack.shape[:2]
    side = corrupt_head if corrupt_head.dim() == 2 else corrupt_head[:, None].expand(B, K)
    h_stack, h_mask = model.modality_stack(head_index)  # [B, S, D], [B, S]
    t_stack, t_mask = model.modality_stack(tail_index)
    s4, s3 = side[..., None, None], side[..., None]
    rel = rel_type[:, None].expand(B, K)
    if model.inverse_relations:
        anchor = torch.where(s4, t_stack[:, None], h_stack[:, None])
        anchor_mask = torch.where(s3, t_mask[:, None], h_mask[:, None])
        rel = torch.where(side, rel + model.num_relations, rel)
        return model.score_stacks(anchor, anchor_mask, rel, cand_stack, cand_mask)
    H = torch.where(s4, cand_stack, h_stack[:, None])
    Hm = torch.where(s3, cand_mask, h_mask[:, None])
    T = torch.where(s4, t_stack[:, None], cand_stack)
    Tm = torch.where(s3, t_mask[:, None], cand_mask)
    return model.score_stacks(H, Hm, rel, T, Tm)


def single_view(owner: str, model, scored) -> Tuple[Tensor, Tensor]:
    r"""The positive and negative scores of a :class:`~torch_mmkg.nn.regimes.ScoredBatch`
    with one scorer judging every row."""
    if len(scored.views) != 1 or scored.views[0][0] is not None:
        raise ValueError(f"{owner} needs a model with one scorer over every triple; "
                         f"{type(model).__name__} scores the batch with "
                         f"{len(scored.views)} (e.g. per_term_loss or an ensemble)")
    return scored.views[0][1], scored.views[0][2]


def build_model(name: str, num_nodes: int, num_relations: int, hidden_channels: int,
                args: Optional[Dict[str, Any]] = None, data=None):
    r"""A registered model by name: from the graph :obj:`data` for a multi-modal model (its
    :meth:`from_data`), else from the sizes."""
    from torch_mmkg.nn import MODELS
    cls = MODELS[name]
    args = dict(args or {})
    if hasattr(cls, 'from_data') and data is not None:
        return cls.from_data(data, hidden_channels, **args)
    return cls(num_nodes, num_relations, hidden_channels, **args)
