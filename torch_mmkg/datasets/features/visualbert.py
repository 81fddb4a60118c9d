r"""Multimodal entity features from a pre-trained VisualBERT (the encoding module of VBKGC).

The Hugging Face ``transformers`` package is an optional dependency: it is imported on first use
and its absence is reported with the ``pip`` extra to install.
"""
import contextlib
import importlib.util
import os.path as osp
import re
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from torch_mmkg.datasets.features.text import _hf_offline

__all__ = ['VisualBertEncoder']

_INSTALL_HINT = 'pip install "torch_mmkg[multimodal]"'
_MISSING_IMAGE = ('xavier', 'text_only')


def _require_transformers():
    if importlib.util.find_spec('transformers') is None:
        raise ImportError(f"VisualBertEncoder needs the 'transformers' package; install it with "
                          f"{_INSTALL_HINT}")


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    # transformers 5 shows a "Loading weights" bar in from_pretrained; hide it with ours.
    from transformers.utils import logging as hf_logging
    hide = not enabled and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def _safe_name(path: str) -> str:
    base = osp.basename(str(path).rstrip('/\\'))
    return re.sub(r'[^A-Za-z0-9._-]+', '_', base) or 'model'


class VisualBertEncoder:
    r"""The multimodal entity encoder of VBKGC from the `"Knowledge Graph Completion with
    Pre-trained Multimodal Transformer and Twins Negative Sampling"
    <https://arxiv.org/abs/2209.07084>`_ paper.

    For an entity :math:`e_i` with description :math:`d_i = (w_1, \ldots, w_n)` and visual
    tokens :math:`(v_1, \ldots, v_m)` (*e.g.*, VGG features of its images), VisualBERT reads

    .. math::
        \mathrm{input}_i = (\texttt{[CLS]}, w_1, \ldots, w_n, \texttt{[SEP]},
        v_1, \ldots, v_m, \texttt{[SEP]})

    and the last-layer hidden state of :obj:`[CLS]` is the entity's multimodal feature

    .. math::
        \mathbf{h}_i = \mathrm{VisualBERT}(\mathrm{input}_i)_{\texttt{[CLS]}}.

    As in Hugging Face's :class:`transformers.VisualBertModel`, the visual tokens are passed as
    :obj:`visual_embeds` (projected to the hidden size inside the model) with
    :obj:`visual_token_type_ids` of :obj:`1` and a :obj:`visual_attention_mask`; that model has
    no trailing :obj:`[SEP]` token after the visual segment. Texts are padded with an
    :obj:`attention_mask` and visual tokens are padded to the longest entity of a batch with
    zeros in :obj:`visual_attention_mask`, so features do not depend on batching.

    Entities without an image follow :obj:`missing_image`: with :obj:`"xavier"` (the paper:
    *"For those entities which have no image, we employ Xavier initialization for their visual
    features"*) the entity at position :obj:`i` gets one visual token

    .. code-block:: python

        g = torch.Generator().manual_seed(seed + i)
        v = torch.nn.init.xavier_uniform_(torch.empty(1, visual_dim), generator=g)

    (see :meth:`xavier_token`), which depends on the entity's position only, never on the
    batch; with :obj:`"text_only"` the entity has no visual token at all.

    The model runs in eval mode under :func:`torch.no_grad`; outputs are float32 CPU tensors.

    Args:
        model (str or transformers.VisualBertModel): A local model folder, loaded on first use
            with :meth:`transformers.VisualBertModel.from_pretrained`, or a built
            :class:`~transformers.VisualBertModel` (put into eval mode, and moved to
            :obj:`device` if one is given).
        tokenizer (str or tokenizer, optional): A tokenizer folder (loaded with
            :class:`transformers.AutoTokenizer`) or a tokenizer object. :obj:`None` loads it from
            :obj:`model` (or, for a built model, from its :obj:`config.name_or_path`).
            (default: :obj:`None`)
        device (str or torch.device, optional): Where the model runs; :obj:`None` keeps a built
            model where it is and puts a loaded one on the CPU. (default: :obj:`None`)
        batch_size (int, optional): Entities per forward pass. (default: :obj:`32`)
        max_length (int, optional): Text tokens per entity, :obj:`[CLS]` and :obj:`[SEP]`
            included; longer texts are truncated (also to the model's
            :obj:`max_position_embeddings`). (default: :obj:`128`)
        missing_image (str, optional): :obj:`"xavier"` or :obj:`"text_only"`, see above.
            (default: :obj:`"xavier"`)
        seed (int, optional): Base seed of the Xavier visual tokens. (default: :obj:`0`)
        progress (bool, optional): Show a :obj:`tqdm` progress bar. (default: :obj:`True`)
        local_files_only (bool, optional): Load model and tokenizer without touching the
            network (also sets ``HF_HUB_OFFLINE=1`` while loading). (default: :obj:`True`)

    Attributes:
        name (str): A short tag safe for file names, ``visualbert-<base name of model>``.

    Shapes:
        - **input:** :obj:`N` texts (:obj:`str` or :obj:`None`) and optionally :obj:`N` visual
          token tensors :math:`[m_i, \mathrm{visual\_dim}]` (or :obj:`None`)
        - **output:** :math:`[N, \mathrm{dim}]` features (and, for :meth:`encode_entities`,
          an :math:`[N]` bool mask)

    Raises:
        ImportError: if ``transformers`` is not installed.
        ValueError: for an unknown :obj:`missing_image` or a non-positive :obj:`batch_size`
            or :obj:`max_length`; on load, for a model with :obj:`config.bypass_transformer`
            (which :class:`transformers.VisualBertModel` cannot run with visual input).
    """
    def __init__(self, model, tokenizer=None, device=None, batch_size: int = 32,
                 max_length: int = 128, missing_image: str = 'xavier', seed: int = 0,
                 progress: bool = True, local_files_only: bool = True):
        _require_transformers()
        if missing_image not in _MISSING_IMAGE:
            raise ValueError(f"missing_image must be one of {_MISSING_IMAGE}, got "
                             f"{missing_image!r}")
        if int(batch_size) < 1 or int(max_length) < 2:
            raise ValueError(f"batch_size must be >= 1 and max_length >= 2, got "
                             f"{batch_size} and {max_length}")
        if isinstance(model, (str, bytes)) or hasattr(model, '__fspath__'):
            self.path: Optional[str] = str(model)
            self._model = None
            self.name = f'visualbert-{_safe_name(self.path)}'
        elif isinstance(model, torch.nn.Module) and hasattr(model, 'config'):
            self._model = model
            self.path = getattr(model.config, 'name_or_path', None) or None
            self.name = f"visualbert-{_safe_name(self.path) if self.path else 'custom'}"
        else:
            raise TypeError(f"model must be a local path or a transformers.VisualBertModel, got "
                            f"{type(model).__name__}")
        if tokenizer is None or isinstance(tokenizer, str) or hasattr(tokenizer, '__fspath__'):
            self._tokenizer_path = str(tokenizer) if tokenizer is not None else self.path
            self._tokenizer = None
        else:
            self._tokenizer_path, self._tokenizer = None, tokenizer
        self.device = torch.device(device) if device is not None else None
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.missing_image = missing_image
        self.seed = int(seed)
        self.progress = progress
        self.local_files_only = local_files_only
        self._ready = False

    # -- lazy loading --------------------------------------------------------------------------
    @property
    def model(self):
        r"""The :class:`transformers.VisualBertModel`, loaded on first use, in eval mode."""
        if not self._ready:
            if self._model is None:
                with _hf_offline(self.local_files_only), _hf_progress(self.progress):
                    from transformers import VisualBertModel
                    self._model = VisualBertModel.from_pretrained(
                        self.path, local_files_only=self.local_files_only)
            if getattr(self._model.config, 'bypass_transformer', False):
                # transformers' bypass path indexes a [B, 1, 1, L] mask at query position
                # ``text_length`` and fails (IndexError) whenever visual_embeds are given.
                raise ValueError("VisualBertEncoder does not support VisualBERT models with "
                                 "config.bypass_transformer=True")
            if self.device is not None:
                self._model.to(self.device)
            else:
                param = next(self._model.parameters(), None)
                self.device = param.device if param is not None else torch.device('cpu')
            self._model.eval()
            self._ready = True
        return self._model

    @property
    def tokenizer(self):
        r"""The text tokenizer, loaded on first use."""
        if self._tokenizer is None:
            if self._tokenizer_path is None:
                raise ValueError("VisualBertEncoder needs a tokenizer: pass tokenizer=... (the "
                                 "model given has no local name_or_path to load one from)")
            with _hf_offline(self.local_files_only):
                from transformers import AutoTokenizer
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self._tokenizer_path, local_files_only=self.local_files_only)
        return self._tokenizer

    @property
    def dim(self) -> int:
        r"""The feature dimension (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def visual_dim(self) -> int:
        r"""The width of a visual token (:obj:`config.visual_embedding_dim`)."""
        return int(self.model.config.visual_embedding_dim)

    # -- encoding ------------------------------------------------------------------------------
    def xavier_token(self, position: int) -> Tensor:
        r"""The visual token of the entity at :obj:`position` when it has no image: a
        :obj:`[1, visual_dim]` float32 CPU tensor drawn with
        :func:`torch.nn.init.xavier_uniform_` from a CPU generator seeded with
        :obj:`seed + position`."""
        g = torch.Generator().manual_seed(self.seed + int(position))
        return torch.nn.init.xavier_uniform_(torch.empty(1, self.visual_dim), generator=g)

    def encode(self, texts: Sequence[Optional[str]],
               visual: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
        r"""Encodes entities into their :obj:`[CLS]` features.

        Args:
            texts (Sequence[str or None]): One description per entity; :obj:`None` or blank
                gives just ``[CLS] [SEP]``.
            visual (Sequence[Tensor or None], optional): One :obj:`[m_i, visual_dim]` tensor of
                visual tokens per entity; :obj:`None` (or :obj:`m_i = 0`) means no image, handled
                by :obj:`missing_image`. :obj:`None` for the whole argument = no entity has an
                image. (default: :obj:`None`)

        Returns:
            Tensor: a float32 :obj:`[len(texts), dim]` CPU tensor, rows in the order of
            :obj:`texts`.

        Raises:
            ValueError: if :obj:`visual` and :obj:`texts` differ in length, or a visual tensor
                is not 2-d, has a width other than :obj:`visual_dim` or non-finite values.
        """
        texts, visual = self._check(texts, visual)
        return self._encode(texts, visual, list(range(len(texts))))

    def encode_entities(self, texts: Sequence[Optional[str]],
                        visual: Optional[Sequence[Optional[Tensor]]] = None
                        ) -> Tuple[Tensor, Tensor]:
        r"""Encodes entities into features and an availability mask, like
        :func:`~torch_mmkg.datasets.features.text.encode_entity_texts`.

        Only entities with a text or an image are encoded (Xavier tokens keep the seed of the
        entity's position in :obj:`texts`); entities with neither get a zero row and
        :obj:`False` in the mask, never a made-up feature.

        Args:
            texts (Sequence[str or None]): As in :meth:`encode`.
            visual (Sequence[Tensor or None], optional): As in :meth:`encode`.
                (default: :obj:`None`)

        Returns:
            (Tensor, Tensor): float32 :obj:`[N, dim]` features (zero rows where there is
            neither text nor image) and the bool :obj:`[N]` mask.

        Raises:
            ValueError: as :meth:`encode`, and if the model returns non-finite features.
        """
        texts, visual = self._check(texts, visual)
        mask = torch.tensor([bool(t) or v is not None for t, v in zip(texts, visual)],
                            dtype=torch.bool)
        x = torch.zeros(len(texts), self.dim)
        rows = mask.nonzero().view(-1).tolist()
        if rows:
            emb = self._encode([texts[i] for i in rows], [visual[i] for i in rows], rows)
            if not torch.isfinite(emb).all():
                i = rows[int((~torch.isfinite(emb).all(dim=1)).nonzero()[0, 0])]
                raise ValueError(f"VisualBERT returned a non-finite feature for entity {i}")
            x[rows] = emb
        return x, mask

    def _check(self, texts, visual) -> Tuple[List[str], List[Optional[Tensor]]]:
        texts = list(texts)
        out_texts = []
        for i, t in enumerate(texts):
            if t is not None and not isinstance(t, str):
                raise ValueError(f"Entity {i}: the text must be a str or None, got "
                                 f"{type(t).__name__}")
            out_texts.append(t.strip() if t is not None else '')
        if visual is None:
            return out_texts, [None] * len(texts)
        visual = list(visual)
        if len(visual) != len(texts):
            raise ValueError(f"Got {len(visual)} visual entries for {len(texts)} texts (expected "
                             f"one per entity, None for an entity without image)")
        out_visual: List[Optional[Tensor]] = []
        for i, v in enumerate(visual):
            if v is None:
                out_visual.append(None)
                continue
            v = torch.as_tensor(v)
            if v.dim() != 2:
                raise ValueError(f"Entity {i}: visual tokens must be a 2-d [m, visual_dim] "
                                 f"tensor, got shape {tuple(v.shape)}")
            if v.size(1) != self.visual_dim:
                raise ValueError(f"Entity {i}: visual tokens have width {v.size(1)}, but the "
                                 f"model expects visual_dim={self.visual_dim}")
            v = v.detach().float().cpu()
            if not torch.isfinite(v).all():
                raise ValueError(f"Entity {i}: visual tokens hold non-finite values")
            out_visual.append(v if v.size(0) > 0 else None)
        return out_texts, out_visual

    def _encode(self, texts: List[str], visual: List[Optional[Tensor]],
                positions: List[int]) -> Tensor:
        model = self.model
        if self.missing_image == 'xavier':
            visual = [v if v is not None else self.xavier_token(p)
                      for v, p in zip(visual, positions)]
        max_length = min(self.max_length, int(model.config.max_position_embeddings))
        dtype = next(model.parameters()).dtype
        out = torch.empty(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: -(
            len(texts[i]) + (visual[i].size(0) if visual[i] is not None else 0)))
        starts = range(0, len(texts), self.batch_size)
        with torch.no_grad():
            for start in tqdm(starts, desc=f'Encoding entities ({self.name})', unit='batch',
                              disable=not self.progress):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=max_length, return_tensors='pt')
                inputs = {'input_ids': enc['input_ids'].to(self.device),
                          'attention_mask': enc['attention_mask'].to(self.device)}
                if 'token_type_ids' in enc:
                    inputs['token_type_ids'] = enc['token_type_ids'].to(self.device)
                m = max((visual[i].size(0) for i in idx if visual[i] is not None), default=0)
                if m > 0:
                    embeds = torch.zeros(len(idx), m, self.visual_dim)
                    vmask = torch.zeros(len(idx), m, dtype=torch.long)
                    for row, i in enumerate(idx):
                        if visual[i] is not None:
                            embeds[row, :visual[i].size(0)] = visual[i]
                            vmask[row, :visual[i].size(0)] = 1
                    inputs['visual_embeds'] = embeds.to(self.device, dtype)
                    inputs['visual_attention_mask'] = vmask.to(self.device)
                    inputs['visual_token_type_ids'] = torch.ones(
                        len(idx), m, dtype=torch.long, device=self.device)
                hidden = model(**inputs, return_dict=True).last_hidden_state
                out[idx] = hidden[:, 0].float().cpu()
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.name}, missing_image='
                f'{self.missing_image!r})')
