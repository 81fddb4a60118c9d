from typing import List, Optional, Sequence

from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.mmkg import ENTITY, get_modalities, mask_key


def completed_key(modality: str) -> str:
    r"""The entity-store key of the flag of rows of :obj:`modality` that were *completed*
    (filled by a :class:`ModalityCompleter`) rather than originally present."""
    return f'completed_{modality}'


def original_mask(data: HeteroData, modality: str) -> Tensor:
    r"""The rows of :obj:`modality` present in the source data: its mask without the
    completed rows (see :func:`completed_key`)."""
    store = data[ENTITY]
    mask = store[mask_key(modality)]
    flag = getattr(store, completed_key(modality), None)
    return mask if flag is None else mask & ~flag


class ModalityCompleter:
    r"""The interface of the completers of LBMKGC's modality completion (LvMC): fill the
    features of a modality :obj:`target` for entities that lack it, from what they have.

    A completer is first :meth:`fit` on a graph (a learned translator trains on the entities
    that have both modalities; a generative completer needs no fitting), then
    :meth:`complete` returns the features of the given entities. The transform
    :class:`~torch_mmkg.transforms.CompleteModality` writes them into the graph, sets their
    mask and flags them in ``completed_<target>`` so that they are never mistaken for
    originally present rows.
    """
    def fit(self, data: HeteroData, target: str,
            sources: Optional[Sequence[str]] = None) -> 'ModalityCompleter':
        r"""Fits the completer of :obj:`target` on :obj:`data` (from :obj:`sources`, all
        other modalities by default); returns :obj:`self`."""
        return self

    def completable(self, data: HeteroData, target: str) -> Tensor:
        r"""The :obj:`[N]` bool mask of entities this completer can fill: by default those
        lacking :obj:`target` that have at least one source modality."""
        raise NotImplementedError

    def complete(self, data: HeteroData, target: str, index: Tensor) -> Tensor:
        r"""The completed :obj:`[len(index), F_target]` features of the entities
        :obj:`index`."""
        raise NotImplementedError


def check_target(data: HeteroData, target: str) -> List[str]:
    r"""The modalities of :obj:`data`, after checking that :obj:`target` is one of them."""
    mods = get_modalities(data)
    if target not in mods:
        raise ValueError(f"modality '{target}' is not in the graph (it has {mods})")
    return mods
