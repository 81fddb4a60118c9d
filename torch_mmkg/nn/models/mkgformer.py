r"""MKGformer: a hybrid BERT/CLIP-ViT transformer with multi-level fusion for multi-modal link
prediction, the [MASK] prediction restricted to entity tokens."""
import math
import os
import re
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import BCELoss, SoftmaxCrossEntropyLoss
from torch_mmkg.nn.regimes import QueryScores
from torch_mmkg.nn.validation import choice, positive_int, probability

__all__ = ['MKGformer', 'prefix_attention', 'correlation_aware_fusion',
           'pretrain_entity_tokens', 'readable_name']

#: CLIP's image normalisation (``CLIPImageProcessor`` defaults), for uint8 images.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREFIXES = ('text', 'vision', 'none')
PREFIX_SOURCES = ('previous_layer', 'same_layer')

PathOrModel = Union[str, os.PathLike, Any]


def _require_transformers(owner: str):
    try:
        import transformers
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{owner} needs transformers; install it with "
                          f"pip install 'torch_mmkg[multimodal]'") from None
    return transformers


def prefix_attention(query: Tensor, key: Tensor, value: Tensor,
                     prefix_key: Optional[Tensor] = None, prefix_value: Optional[Tensor] = None,
                     key_mask: Optional[Tensor] = None, prefix_mask: Optional[Tensor] = None,
                     scale: Optional[float] = None, dropout: float = 0.0,
                     training: bool = False) -> Tensor:
    r"""Multi-head attention whose keys and values are prefixed by another sequence's
    (MKGformer's prefix-guided interaction):

    .. math::
        \mathrm{Attn} = \mathrm{softmax}\big(s\, Q\, [\phi_k; K]^\top\big)\, [\phi_v; V],

    with :math:`s` = :obj:`scale` (default :math:`1/\sqrt{d_h}`). Masked keys (:obj:`False`)
    get no weight; a query with no key left attends to nothing (a zero output).

    Shapes:
        - **input:** :obj:`query` :math:`[B, H, L_q, d_h]`, :obj:`key`/:obj:`value`
          :math:`[B, H, L_k, d_h]`, :obj:`prefix_key`/:obj:`prefix_value`
          :math:`[B, H, L_p, d_h]`, :obj:`key_mask` :math:`[B, L_k]`, :obj:`prefix_mask`
          :math:`[B, L_p]` (bool, True = attend)
        - **output:** :math:`[B, H, L_q, d_h]`
    """
    B, Lk = key.size(0), key.size(-2)
    mask = key_mask
    if prefix_key is not None:
        Lp = prefix_key.size(-2)
        key = torch.cat([prefix_key, key], dim=-2)
        value = torch.cat([prefix_value, value], dim=-2)
        if key_mask is not None or prefix_mask is not None:
            ones = torch.ones(B, 1, dtype=torch.bool, device=key.device)
            mask = torch.cat([ones.expand(B, Lp) if prefix_mask is None else prefix_mask,
                              ones.expand(B, Lk) if key_mask is None else key_mask], dim=-1)
    scale = query.size(-1)**-0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float('-inf'))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:
        probs = torch.nan_to_num(probs, nan=0.0)  # a query with no key attends to nothing
    probs = F.dropout(probs, dropout, training)
    return torch.matmul(probs, value)


def correlation_aware_fusion(text: Tensor, visual: Tensor,
                             visual_mask: Optional[Tensor] = None) -> Tensor:
    r"""MKGformer's correlation-aware fusion: every token :math:`i` aggregates the visual
    tokens :math:`j` by their token–patch similarity,

    .. math::
        S_{ij} = \mathbf{t}_i^\top \mathbf{v}_j, \qquad
        \mathrm{Agg}_i = \sum_j \mathrm{softmax}_j(S_{i})\, \mathbf{v}_j,

    over the visual tokens present (:obj:`visual_mask`); a sequence without any has
    :math:`\mathrm{Agg} = 0`.

    Shapes:
        - **input:** :obj:`text` :math:`[B, L, D]`, :obj:`visual` :math:`[B, P, D]`,
          :obj:`visual_mask` :math:`[B, P]`
        - **output:** :math:`[B, L, D]`
    """
    scores = torch.matmul(text, visual.transpose(-1, -2))
    if visual_mask is None:
        return torch.matmul(torch.softmax(scores, dim=-1), visual)
    scores = scores.masked_fill(~visual_mask[:, None, :], float('-inf'))
    probs = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return torch.matmul(probs, visual)


def readable_name(name: str) -> str:
    r"""A readable text of an entity or relation identifier: the last segment of a URI,
    underscores and camel case split (``<http://dbpedia.org/ontology/birthPlace>`` →
    ``"birth place"``)."""
    name = str(name).strip().strip('<>')
    name = re.split(r'[/#]', name.rstrip('/'))[-1] if re.search(r'[/#]', name) else name
    name = re.sub(r'(?<=[a-z0-9])(?=[A-Z])', ' ', name.replace('_', ' '))
    return re.sub(r'\s+', ' ', name).strip().lower()


def _split_heads(x: Tensor, heads: int) -> Tensor:
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    B, H, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, H * d)


def check_checkpoints(owner: str, text_model: Any, vision_model: Any):
    r"""Raises a :class:`ValueError` naming the checkpoints MKGformer lacks."""
    missing = [n for n, v in (('text_model', text_model), ('vision_model', vision_model))
               if v is None]
    if missing:
        raise ValueError(
            f"{owner} needs pretrained checkpoints, which cannot be downloaded here: "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing. "
            f"Give text_model the folder of a BERT checkpoint (e.g. bert-base-uncased, "
            f"its tokenizer included) and vision_model the folder of a CLIP checkpoint "
            f"(e.g. openai/clip-vit-base-patch32), as saved by save_pretrained()")


def _load(kind: str, spec: Any, owner: str):
    r"""The masked-LM BERT (:obj:`kind="text"`) or CLIP vision model (:obj:`"vision"`) of a
    checkpoint folder, a configuration (randomly initialised) or a model."""
    transformers = _require_transformers(owner)
    arg = f'{kind}_model'
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        cls = (transformers.BertForMaskedLM if kind == 'text' else
               transformers.CLIPVisionModel)
        try:
            model = cls.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, EnvironmentError) as e:
            raise ValueError(f"{owner}: {arg}={path!r} could not be loaded offline as a "
                             f"{cls.__name__} checkpoint ({type(e).__name__}: {e})") from None
    elif isinstance(spec, transformers.PretrainedConfig):
        if kind == 'vision' and hasattr(spec, 'vision_config'):
            spec = spec.vision_config
        cls = (transformers.BertForMaskedLM if kind == 'text' else
               transformers.CLIPVisionModel)
        try:
            model = cls(spec)
        except Exception as e:  # a configuration of another architecture
            raise ValueError(f"{owner}: {arg} must be a {cls.__name__} configuration, got "
                             f"{type(spec).__name__} ({e})") from None
    elif isinstance(spec, torch.nn.Module):
        model = spec
    else:
        raise ValueError(f"{owner}: {arg} must be a checkpoint folder, a transformers "
                         f"configuration or model, got {type(spec).__name__}")
    if kind == 'text':
        if not (hasattr(model, 'bert') and hasattr(model, 'cls')):
            raise ValueError(f"{owner}: text_model must be a BERT masked language model "
                             f"(transformers.BertForMaskedLM), got {type(model).__name__}")
        return model
    model = getattr(model, 'vision_model', model)  # CLIPModel, or CLIPVisionModel of v4
    if not (hasattr(model, 'embeddings') and hasattr(model, 'encoder')
            and hasattr(model, 'pre_layrnorm')):
        raise ValueError(f"{owner}: vision_model must be a CLIP vision transformer "
                         f"(transformers.CLIPVisionModel or CLIPModel), got "
                         f"{type(model).__name__}")
    return model


class MKGformer(KGEModel):
    r"""The MKGformer model from the `"Hybrid Transformer with Multi-level Fusion for
    Multimodal Knowledge Graph Completion" <https://arxiv.org/abs/2205.02357>`_ paper
    (SIGIR 2022): a BERT text transformer and a CLIP ViT vision transformer of :math:`L`
    layers each, run side by side; in the top :math:`M` layers (the M-Encoder) the two
    interact by a prefix-guided interaction (PGI) in the self-attention and a
    correlation-aware fusion (CAF) in the text feed-forward network. Every entity and every
    relation is a new vocabulary token; a query :math:`(h, r, ?)` is the text

    ``[CLS] [ENTITY_h] [SEP] relation text [RELATION_r] [SEP] [MASK] description of h [SEP]``

    with the images of :math:`h` on the vision side, and the masked-LM logits at [MASK],
    restricted to the entity tokens, score every entity:

    .. math::
        f(h, r, e) = \mathbf{w}_e^\top\, \mathrm{LN}\big(\mathrm{act}(W \mathbf{x}_{[MASK]} +
        \mathbf{b})\big) + b_e,

    :math:`\mathbf{w}_e` being the [ENTITY_e] token embedding (tied input and output, as the
    masked-LM head ties them) and :math:`b_e` its output bias. A head query
    :math:`(?, r, t)` is the inverse relation :math:`r + R`: the authors' head template
    ``[CLS] [MASK] [SEP] relation text [RELATION_r] [SEP] [ENTITY_t] description of t [SEP]``
    with the images of :math:`t` (:meth:`score_heads`).

    **PGI** (with :obj:`prefix="text"`, the authors' code): in each M-Encoder layer
    :math:`l` the visual self-attention is prefixed by the textual keys and values,

    .. math::
        \mathbf{h}^{V}_l = \mathrm{softmax}\big(Q^V [\phi_k; K^V]^\top / \sqrt{d_h}\big)
        [\phi_v; V^V], \qquad \phi_k = \mathbf{h}^T W^T_k,\ \phi_v = \mathbf{h}^T W^T_v,

    :math:`W^T_{k,v}` the key and value projections of a text layer: of layer :math:`l-1`,
    on its input, as the authors' code computes them (:obj:`prefix_from="previous_layer"`),
    or of layer :math:`l` on :math:`\mathbf{h}^T_{l-1}` (:obj:`"same_layer"`).
    :obj:`prefix="vision"` prefixes the text attention by the visual keys and values
    instead, :obj:`"none"` removes PGI (ablation).

    **CAF**: in each M-Encoder text layer, the attention context :math:`\mathbf{c}_i`
    (before the output projection, as in the authors' code) aggregates the visual tokens
    :math:`\mathbf{v}_j` of the same layer's vision output by their similarity, and the
    aggregate enters the feed-forward network:

    .. math::
        \mathrm{Agg}_i = \sum_j \mathrm{softmax}_j(\mathbf{c}_i^\top \mathbf{v}_j)\,
        \mathbf{v}_j, \qquad
        \mathrm{FFN}(\mathbf{x}_i) = \mathrm{act}(\mathbf{x}_i W_1 + \mathbf{b}_1 +
        \mathrm{Agg}_i W_3 + \mathbf{b}_3)\, W_2 + \mathbf{b}_2.

    **Visual input.** Raw images (:obj:`images`, :math:`[N, K, 3, H, W]` float pixels
    normalised as CLIP's processor does, or uint8 pixels normalised here, or a callable
    :obj:`index -> (pixels, mask)` that loads them), patch-embedded by the CLIP vision
    embeddings; and/or precomputed features (:obj:`features`, per modality :math:`[N, F_m]`
    or :math:`[N, P_m, F_m]`, for users without raw images, e.g. the 4096-d VGG vectors of
    DB15K), each row a visual token after a learnt projection :math:`F_m \to D_V` (this
    library's addition: the paper only feeds pixels). All visual tokens pass CLIP's
    pre-layer norm and the vision layers.

    **Missing images.** With :obj:`mask_missing=True` a missing image or feature row is
    masked out of the visual self-attention and of CAF, and an entity without any visual
    token is scored by the text transformer alone (no CAF term); text padding
    is masked out of the PGI prefix. :obj:`mask_missing=False` reproduces the authors' code:
    missing images are zero pixels (missing features zero rows) attended like real ones,
    and the prefix includes the text padding.

    **Training.** 1-N with inverse relations over all entities (:class:`OneToN
    <torch_mmkg.nn.regimes.OneToN>`): :obj:`objective="softmax"` is a softmax cross-entropy
    with label smoothing (the authors' :obj:`LabelSmoothSoftmaxCEV1` over one answer per
    triple; here the answers of a query share the target mass), :obj:`"bce"` the multi-label
    binary cross-entropy of the authors' scripts (:obj:`--bce 1`, which ignores their label
    smoothing). The two-stage schedule: stage 1 (:func:`pretrain_entity_tokens`) trains only
    the token embeddings to predict each entity from ``The description of [MASK] is that
    <description> .``; stage 2 is link prediction (any regime, e.g. the
    :class:`~torch_mmkg.training.Trainer`).

    **Sources.** Where the paper's text is not specific the authors' code (zjunlp/MKGformer,
    :obj:`MKG/models/modeling_unimo.py`) decides; its differences are switches:
    :obj:`vision_positions` (the paper's CLIP ViT embeddings with [CLS] and positions, or the
    authors' patch embeddings without either), :obj:`prefix_from`, :obj:`mask_missing`.
    The authors' six extra crops per entity (three 128-px, three 64-px) are not reproduced:
    give :math:`K` same-size images instead.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The width :math:`D`; must equal the text model's hidden size
            (768 for BERT-base).
        features (Mapping[str, Tensor], optional): Precomputed visual features per modality,
            :math:`[N, F_m]` or :math:`[N, P_m, F_m]`. (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Their availability, :math:`[N]` or
            :math:`[N, P_m]` bool. (default: all present)
        text_model: A BERT checkpoint folder (loaded offline with
            :meth:`transformers.BertForMaskedLM.from_pretrained`), a
            :class:`transformers.BertConfig` (random initialisation) or a
            :class:`transformers.BertForMaskedLM`. Required.
        vision_model: A CLIP checkpoint folder (:class:`transformers.CLIPVisionModel`, or a
            full CLIP model's folder), a :class:`transformers.CLIPVisionConfig` or
            :class:`transformers.CLIPConfig`, or such a model. Required.
        tokenizer: The text model's tokenizer (a :mod:`transformers` tokenizer or its
            folder; :obj:`None`: the tokenizer of :obj:`text_model`'s folder).
        descriptions (Sequence[str], optional): The :math:`N` entity descriptions
            (:obj:`None` entries: empty). (default: all empty)
        relation_texts (Sequence[str], optional): The :math:`R` relation texts.
            (default: ``"relation i"``)
        images (Tensor or callable, optional): :math:`[N, K, 3, H, W]` pixels, or
            :obj:`index -> (pixels [B, K, 3, H, W], mask [B, K])`. (default: :obj:`None`)
        image_mask (Tensor, optional): :math:`[N, K]` bool. (default: all present)
        num_fusion_layers (int, optional): :math:`M \leq L`. (default: :obj:`4`, the
            authors' code: layers 9–12 of 12)
        prefix (str, optional): PGI: :obj:`"text"`, :obj:`"vision"` or :obj:`"none"`.
            (default: :obj:`"text"`)
        prefix_from (str, optional): :obj:`"previous_layer"` or :obj:`"same_layer"`.
            (default: :obj:`"previous_layer"`)
        fusion (bool, optional): CAF (:obj:`False`: the "w/o CAF" ablation).
            (default: :obj:`True`)
        vision_positions (bool, optional): CLIP's [CLS] token and position embeddings on
            the image patches (:obj:`False`: the authors' code). (default: :obj:`True`)
        max_length (int, optional): Tokens per query; descriptions are cut to fit.
            (default: :obj:`64`, the authors' FB15k-237 script)
        objective (str, optional): :obj:`"softmax"` or :obj:`"bce"`.
            (default: :obj:`"softmax"`)
        label_smoothing (float, optional): In :math:`[0, 1)`. (default: :obj:`0.1`)
        mask_missing (bool, optional): (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces the loss of :obj:`objective`.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 text_model: Optional[PathOrModel] = None,
                 vision_model: Optional[PathOrModel] = None, tokenizer: Any = None,
                 descriptions: Optional[Sequence[Optional[str]]] = None,
                 relation_texts: Optional[Sequence[str]] = None,
                 images: Union[Tensor, Callable, None] = None,
                 image_mask: Optional[Tensor] = None, num_fusion_layers: int = 4,
                 prefix: str = 'text', prefix_from: str = 'previous_layer',
                 fusion: bool = True, vision_positions: bool = True, max_length: int = 64,
                 objective: str = 'softmax', label_smoothing: float = 0.1,
                 mask_missing: bool = True, loss: Optional[torch.nn.Module] = None):
        name = type(self).__name__
        check_checkpoints(name, text_model, vision_model)
        N = positive_int(self, 'num_nodes', num_nodes)
        R = positive_int(self, 'num_relations', num_relations)
        hidden_channels = positive_int(self, 'hidden_channels', hidden_channels)
        for arg, value in (('fusion', fusion), ('vision_positions', vision_positions),
                           ('mask_missing', mask_missing)):
            choice(self, arg, value, (True, False))
        choice(self, 'prefix', prefix, PREFIXES)
        choice(self, 'prefix_from', prefix_from, PREFIX_SOURCES)
        choice(self, 'objective', objective, ('softmax', 'bce'))
        label_smoothing = probability(self, 'label_smoothing', label_smoothing)
        max_length = positive_int(self, 'max_length', max_length)
        text = _load('text', text_model, name)
        vision = _load('vision', vision_model, name)
        tc, vc = text.config, vision.config
        if hidden_channels != tc.hidden_size:
            raise ValueError(f"{name}: hidden_channels ({hidden_channels}) must equal the text "
                             f"model's hidden size ({tc.hidden_size})")
        L, LV = tc.num_hidden_layers, vc.num_hidden_layers
        if L != LV:
            raise ValueError(f"{name}: the text and vision models must have as many layers "
                             f"(text {L}, vision {LV})")
        if tc.hidden_size != vc.hidden_size or tc.num_attention_heads != \
                vc.num_attention_heads:
            raise ValueError(f"{name}: the text and vision models must have the same hidden "
                             f"size and number of heads (text {tc.hidden_size}/"
                             f"{tc.num_attention_heads}, vision {vc.hidden_size}/"
                             f"{vc.num_attention_heads}) for the prefix-guided interaction")
        M = positive_int(self, 'num_fusion_layers', num_fusion_layers)
        if M > L:
            raise ValueError(f"{name}: num_fusion_layers ({M}) must be at most the number of "
                             f"layers ({L})")
        loss = loss or (SoftmaxCrossEntropyLoss(label_smoothing) if objective == 'softmax'
                        else BCELoss(label_smoothing))
        super().__init__(N, R, hidden_channels, None, loss, inverse_relations=True)
        D = hidden_channels
        self.num_layers, self.num_fusion_layers, self.num_heads = L, M, tc.num_attention_heads
        self.prefix, self.prefix_from = prefix, prefix_from
        self.fusion_enabled, self.vision_positions = bool(fusion), bool(vision_positions)
        self.max_length, self.objective = max_length, objective
        self.label_smoothing, self.mask_missing = label_smoothing, bool(mask_missing)
        self.initializer_range = float(getattr(tc, 'initializer_range', 0.02))
        self.text_dropout = float(tc.attention_probs_dropout_prob)
        self.vision_dropout = float(getattr(vc, 'attention_dropout', 0.0))
        # The text side: BERT's embeddings, layers and masked-LM transform (the vocabulary
        # decoder is replaced by the entity tokens' rows, which it ties to the inputs).
        self.text_embeddings = text.bert.embeddings
        self.text_layers = text.bert.encoder.layer
        self.mlm_transform = text.cls.predictions.transform
        self.vocab_size = int(self.text_embeddings.word_embeddings.num_embeddings)
        self.entity_embeddings = torch.nn.Embedding(N, D)
        self.relation_embeddings = torch.nn.Embedding(R, D)
        self.entity_bias = torch.nn.Parameter(torch.zeros(N))
        self.fusion_dense = torch.nn.ModuleList([
            torch.nn.Linear(D, tc.intermediate_size) for _ in range(M)
        ] if fusion else [])
        # The vision side: CLIP's patch embedding (only with images), pre-norm and layers.
        self.vision_layers = vision.encoder.layers
        self.vision_pre_norm = vision.pre_layrnorm
        self._setup_visual_inputs(vision, features, masks, images, image_mask)
        self._setup_texts(tokenizer, text_model, descriptions, relation_texts)
        self.reset_parameters()

    # Construction ##############################################################################

    def _setup_visual_inputs(self, vision, features, masks, images, image_mask):
        N, D = self.num_nodes, self.hidden_channels
        name = type(self).__name__
        features, masks = dict(features or {}), dict(masks or {})
        if not features and images is None:
            raise ValueError(f"{name} needs visual input: images (raw pixels) or features "
                             f"(precomputed visual features)")
        unknown = sorted(set(masks) - set(features))
        if unknown:
            raise ValueError(f"{name}: masks of modalities {unknown} without features")
        self.visual_modalities = list(features)
        self.projections = torch.nn.ModuleDict()
        for m, x in features.items():
            if not torch.is_tensor(x) or x.dim() not in (2, 3) or x.size(0) != N:
                raise ValueError(f"{name}: features[{m!r}] must be a float [N, F] or "
                                 f"[N, P, F] tensor with N = {N}, got "
                                 f"{tuple(x.shape) if torch.is_tensor(x) else type(x)}")
            x = x.float() if not x.is_floating_point() else x
            x = x[:, None] if x.dim() == 2 else x
            mask = masks.get(m)
            mask = (torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else
                    torch.as_tensor(mask).bool())
            mask = mask[:, None].expand(x.shape[:2]) if mask.dim() == 1 else mask
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"{name}: masks[{m!r}] must be [N] or [N, P] like its "
                                 f"features, got {tuple(mask.shape)}")
            self.register_buffer(f'feature_{m}', x, persistent=False)
            self.register_buffer(f'feature_mask_{m}', mask.contiguous(), persistent=False)
            self.projections[m] = torch.nn.Linear(x.size(-1), D)
        self.image_loader = None
        self.patch_embedding = self.class_embedding = self.position_embedding = None
        self.has_images = images is not None
        if images is None:
            return
        if callable(images) and not torch.is_tensor(images):
            self.image_loader = images
        else:
            if not torch.is_tensor(images) or images.dim() != 5 or images.size(0) != N or \
                    images.size(2) != 3:
                raise ValueError(f"{name}: images must be a [N, K, 3, H, W] tensor with N = "
                                 f"{N} or a callable, got "
                                 f"{tuple(images.shape) if torch.is_tensor(images) else images}")
            mask = (torch.ones(images.shape[:2], dtype=torch.bool) if image_mask is None
                    else torch.as_tensor(image_mask).bool())
            if tuple(mask.shape) != tuple(images.shape[:2]):
                raise ValueError(f"{name}: image_mask must be [N, K] = "
                                 f"{tuple(images.shape[:2])}, got {tuple(mask.shape)}")
            self.register_buffer('images', images, persistent=False)
            self.register_buffer('image_mask', mask, persistent=False)
        emb = vision.embeddings
        self.patch_embedding = emb.patch_embedding
        if self.vision_positions:
            self.class_embedding = emb.class_embedding
            self.position_embedding = emb.position_embedding
        self.register_buffer('pixel_mean', torch.tensor(CLIP_MEAN).view(3, 1, 1),
                             persistent=False)
        self.register_buffer('pixel_std', torch.tensor(CLIP_STD).view(3, 1, 1),
                             persistent=False)

    def _setup_texts(self, tokenizer, text_model, descriptions, relation_texts):
        name = type(self).__name__
        N, R = self.num_nodes, self.num_relations
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            source = tokenizer if tokenizer is not None else text_model
            if not isinstance(source, (str, os.PathLike)):
                raise ValueError(f"{name}: pass tokenizer (a transformers tokenizer or its "
                                 f"folder) when text_model is not a checkpoint folder")
            transformers = _require_transformers(name)
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(os.fspath(source),
                                                                       local_files_only=True)
            except (OSError, ValueError) as e:
                raise ValueError(f"{name}: no tokenizer could be loaded offline from "
                                 f"{os.fspath(source)!r} ({e})") from None
        for attr in ('cls_token_id', 'sep_token_id', 'mask_token_id', 'pad_token_id'):
            if getattr(tokenizer, attr, None) is None:
                raise ValueError(f"{name}: the tokenizer has no {attr[:-3]} token")
        if len(tokenizer) > self.vocab_size:
            raise ValueError(f"{name}: the tokenizer has {len(tokenizer)} tokens, the text "
                             f"model's vocabulary {self.vocab_size}")
        descriptions = [''] * N if descriptions is None else list(descriptions)
        relation_texts = ([f'relation {r}' for r in range(R)] if relation_texts is None
                          else list(relation_texts))
        if len(descriptions) != N:
            raise ValueError(f"{name}: descriptions has {len(descriptions)} entries for {N} "
                             f"entities")
        if len(relation_texts) != R:
            raise ValueError(f"{name}: relation_texts has {len(relation_texts)} entries for "
                             f"{R} relations")

        def ids(texts):
            texts = [t or '' for t in texts]
            return [list(x) for x in tokenizer(texts, add_special_tokens=False)['input_ids']]

        self.cls_id, self.sep_id = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
        self.mask_id, self.pad_id = int(tokenizer.mask_token_id), int(tokenizer.pad_token_id)
        self.description_ids = ids(descriptions)
        self.relation_ids = ids(relation_texts)
        self.pretrain_ids = ids(['The description of', 'is that', '.'])
        # The texts are not parameters: a digest of their token ids travels with the state
        # dict's feature fingerprint.
        flat = [i for seq in self.description_ids + self.relation_ids for i in seq + [-1]]
        self.register_buffer('text_token_ids', torch.tensor(flat, dtype=torch.long),
                             persistent=False)

    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None,
                  descriptions: Union[Sequence[Optional[str]], str, None] = None,
                  relation_texts: Optional[Sequence[str]] = None, **kwargs) -> 'MKGformer':
        r"""Builds the model for a :mod:`torch_mmkg` graph: its modalities (all, or
        :obj:`modalities`) as precomputed visual features, :obj:`descriptions` (a list, or a
        tab-separated file of ``entity name<TAB>text`` lines such as the authors'
        :obj:`entity2text.txt`; default: the readable entity names), the relation texts
        (default: the readable relation names). The graphs of :mod:`torch_mmkg.datasets`
        keep encoded text features, not raw descriptions (a dataset's
        :meth:`entity_texts` gives those)."""
        from torch_mmkg.data.mmkg import ENTITY
        from torch_mmkg.nn.models._modalities import features_from_data
        check_checkpoints(cls.__name__, kwargs.get('text_model'), kwargs.get('vision_model'))
        N, R, features, masks = features_from_data(data, modalities)
        names = getattr(data[ENTITY], 'name', None)
        if isinstance(descriptions, (str, os.PathLike)):
            descriptions = _read_descriptions(os.fspath(descriptions), names, N)
        elif descriptions is None and names is not None:
            descriptions = [readable_name(n) for n in names]
        rel_names = getattr(data, 'relation_names', None)
        if relation_texts is None and rel_names is not None:
            relation_texts = [readable_name(n) for n in rel_names]
        return cls(N, R, hidden_channels, features, masks, descriptions=descriptions,
                   relation_texts=relation_texts, **kwargs)

    def reset_parameters(self):
        r"""Initialises the new parts (entity and relation tokens :math:`\mathcal{N}(0,
        \sigma^2)` with the text model's :obj:`initializer_range`, as the authors initialise
        resized token embeddings; zero output biases; the CAF and feature projections);
        the pretrained transformer weights are kept."""
        std = self.initializer_range
        torch.nn.init.normal_(self.entity_embeddings.weight, 0.0, std)
        torch.nn.init.normal_(self.relation_embeddings.weight, 0.0, std)
        torch.nn.init.zeros_(self.entity_bias)
        for lin in list(self.fusion_dense) + list(self.projections.values()):
            torch.nn.init.normal_(lin.weight, 0.0, std)
            torch.nn.init.zeros_(lin.bias)

    @property
    def modalities(self) -> List[str]:
        r"""The visual inputs: :obj:`"images"` (raw pixels) and the feature modalities."""
        return (['images'] if self.has_images else []) + list(self.visual_modalities)

    # Inputs ####################################################################################

    def _sequences(self, entity_index: Tensor, rel_type: Optional[Tensor]
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Token ids :math:`[B, T]` (entity tokens :math:`V + e`, relation tokens
        :math:`V + N + r`), attention mask and [MASK] position of the queries
        (:obj:`rel_type` :obj:`None`: stage 1's description sentences)."""
        V, N, R = self.vocab_size, self.num_nodes, self.num_relations
        CLS, SEP, MASK = self.cls_id, self.sep_id, self.mask_id
        rows, where = [], []
        ents = entity_index.tolist()
        rels = [None] * len(ents) if rel_type is None else rel_type.tolist()
        for e, r in zip(ents, rels):
            desc = self.description_ids[e]
            if r is None:
                a, b, c = self.pretrain_ids
                head, tail = [CLS] + a + [MASK] + b, c + [SEP]
            else:
                base = r % R
                rel = self.relation_ids[base] + [V + N + base]
                if r < R:  # (e, r, ?): [CLS] [E_e] [SEP] rel [R_r] [SEP] [MASK] desc [SEP]
                    head, tail = [CLS, V + e, SEP] + rel + [SEP, MASK], [SEP]
                else:  # (?, r, e): [CLS] [MASK] [SEP] rel [R_r] [SEP] [E_e] desc [SEP]
                    head, tail = [CLS, MASK, SEP] + rel + [SEP, V + e], [SEP]
            room = self.max_length - len(head) - len(tail)
            if room < 0:  # the relation text itself is too long: cut it before [R_r]
                raise ValueError(f"{type(self).__name__}: max_length={self.max_length} "
                                 f"leaves no room for the query of relation {r}")
            rows.append(head + desc[:room] + tail)
            where.append(rows[-1].index(MASK))
        T = max((len(x) for x in rows), default=1)  # no query: an empty batch
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        att = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, x in enumerate(rows):
            ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            att[i, :len(x)] = True
        device = self.entity_bias.device
        return ids.to(device), att.to(device), torch.tensor(where, dtype=torch.long,
                                                            device=device)

    def token_embeddings(self, ids: Tensor) -> Tensor:
        r"""The input embeddings of token ids of the extended vocabulary: BERT's word
        embeddings below :math:`V`, then the entity tokens, then the relation tokens."""
        V, N = self.vocab_size, self.num_nodes
        word = self.text_embeddings.word_embeddings
        out = word(ids.clamp(max=V - 1))
        is_ent, is_rel = (ids >= V) & (ids < V + N), ids >= V + N
        if bool(is_ent.any()):
            out = torch.where(is_ent[..., None],
                              self.entity_embeddings((ids - V).clamp(0, N - 1)), out)
        if bool(is_rel.any()):
            out = torch.where(is_rel[..., None],
                              self.relation_embeddings((ids - V - N).clamp(
                                  0, self.num_relations - 1)), out)
        return out

    def visual_tokens(self, entity_index: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The visual tokens :math:`[B, P, D]` (after CLIP's pre-layer norm) of the
        entities and their mask :math:`[B, P]`: the patches of each image (with [CLS] and
        positions if :obj:`vision_positions`), then each feature modality's projected
        rows. Without :obj:`mask_missing` the mask is all true and missing inputs are
        zeros."""
        parts, masks = [], []
        if self.has_images:
            if self.image_loader is not None:
                pix, pmask = self.image_loader(entity_index.cpu())
                pix = pix.to(self.entity_bias.device)
                pmask = torch.as_tensor(pmask, device=pix.device).bool()
            else:
                idx = entity_index.to(self.images.device)
                pix, pmask = self.images[idx], self.image_mask[idx]
                pix, pmask = pix.to(self.entity_bias.device), pmask.to(self.entity_bias.device)
            B, K = pix.shape[:2]
            if not pix.is_floating_point():  # raw uint8 pixels: CLIP's normalisation
                pix = (pix.to(self.entity_bias.dtype) / 255.0 - self.pixel_mean) / \
                    self.pixel_std
            pix = pix.to(self.entity_bias.dtype)
            if not self.mask_missing:  # the authors' zero image for a missing one
                pix = pix * pmask[..., None, None, None].to(pix.dtype)
            x = self.patch_embedding(pix.flatten(0, 1)).flatten(2).transpose(1, 2)
            if self.vision_positions:
                cls = self.class_embedding.expand(x.size(0), 1, -1)
                x = torch.cat([cls, x], dim=1)
                if x.size(1) != self.position_embedding.num_embeddings:
                    raise ValueError(f"{type(self).__name__}: images of {pix.shape[-2:]} "
                                     f"pixels do not match the vision model's positions; "
                                     f"resize them or set vision_positions=False")
                x = x + self.position_embedding.weight[None]
            parts.append(x.reshape(B, K * x.size(1), -1))
            masks.append(pmask[:, :, None].expand(B, K, x.size(1)).reshape(B, -1))
        for m in self.visual_modalities:
            idx = entity_index.to(getattr(self, f'feature_{m}').device)
            x = getattr(self, f'feature_{m}')[idx].to(self.entity_bias)
            mask = getattr(self, f'feature_mask_{m}')[idx].to(self.entity_bias.device)
            if not self.mask_missing:
                x = x * mask[..., None].to(x.dtype)
            parts.append(self.projections[m](x))
            masks.append(mask)
        tokens = self.vision_pre_norm(torch.cat(parts, dim=1))
        mask = torch.cat(masks, dim=1)
        if not self.mask_missing:
            mask = torch.ones_like(mask)
        return tokens, mask

    # The hybrid transformer ####################################################################

    def _vision_layer(self, i: int, x: Tensor, mask: Tensor,
                      prefix: Optional[Tuple[Tensor, Tensor, Optional[Tensor]]] = None
                      ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        r"""CLIP encoder layer :obj:`i` (pre-norm), its attention prefixed by
        :obj:`prefix` :obj:`(keys, values, mask)`; returns the output and its keys and
        values."""
        layer = self.vision_layers[i]
        attn, H = layer.self_attn, self.num_heads
        y = layer.layer_norm1(x)
        k, v = _split_heads(attn.k_proj(y), H), _split_heads(attn.v_proj(y), H)
        q = _split_heads(attn.q_proj(y), H)
        pk, pv, pmask = prefix if prefix is not None else (None, None, None)
        # A token of an entity with no visual token at all attends to all of them: its
        # output is never used (CAF ignores it), and this keeps the softmax finite.
        key_mask = mask | ~mask.any(dim=-1, keepdim=True)
        o = prefix_attention(q, k, v, pk, pv, key_mask, pmask, dropout=self.vision_dropout,
                             training=self.training)
        x = x + attn.out_proj(_merge_heads(o))
        x = x + layer.mlp(layer.layer_norm2(x))
        return x, (k, v)

    def _text_kv(self, i: int, h: Tensor) -> Tuple[Tensor, Tensor]:
        sa = self.text_layers[i].attention.self
        return _split_heads(sa.key(h), self.num_heads), _split_heads(sa.value(h), self.num_heads)

    def _text_layer(self, i: int, h: Tensor, mask: Tensor, visual: Optional[Tensor] = None,
                    visual_mask: Optional[Tensor] = None,
                    prefix: Optional[Tuple[Tensor, Tensor, Optional[Tensor]]] = None
                    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        r"""BERT layer :obj:`i` (post-norm), its attention prefixed by :obj:`prefix`, and
        with :obj:`visual` its feed-forward network takes the correlation-aware
        aggregate; returns the output and the layer's keys and values."""
        layer = self.text_layers[i]
        sa = layer.attention.self
        k, v = self._text_kv(i, h)
        q = _split_heads(sa.query(h), self.num_heads)
        pk, pv, pmask = prefix if prefix is not None else (None, None, None)
        ctx = _merge_heads(prefix_attention(q, k, v, pk, pv, mask, pmask,
                                            dropout=self.text_dropout, training=self.training))
        a = layer.attention.output(ctx, h)  # LN(h + dropout(W_o ctx))
        inter = layer.intermediate.dense(a)
        if visual is not None:
            j = i - (self.num_layers - self.num_fusion_layers)
            agg = correlation_aware_fusion(ctx, visual, visual_mask)
            term = self.fusion_dense[j](agg)
            if visual_mask is not None:  # no visual token, no CAF term (bias included)
                term = term * visual_mask.any(dim=-1).to(term.dtype)[:, None, None]
            inter = inter + term
        inter = layer.intermediate.intermediate_act_fn(inter)
        return layer.output(inter, a), (k, v)

    def encode(self, entity_index: Tensor, rel_type: Optional[Tensor] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""The hybrid transformer over the queries :math:`(e_b, r_b)` (:obj:`rel_type` in
        :math:`[0, 2R)`; :obj:`None`: stage 1's description sentences): the last text
        hidden states :math:`[B, T, D]` and the [MASK] positions :math:`[B]`."""
        ids, att, where = self._sequences(entity_index, rel_type)
        h = self.text_embeddings(inputs_embeds=self.token_embeddings(ids),
                                 token_type_ids=torch.zeros_like(ids))
        # The vision layers below the M-Encoder see only the entity: once per entity.
        uniq, inv = torch.unique(entity_index, return_inverse=True)
        vis, vmask = self.visual_tokens(uniq)
        start = self.num_layers - self.num_fusion_layers
        for i in range(start):
            vis, _ = self._vision_layer(i, vis, vmask)
        vis, vmask = vis[inv], vmask[inv]
        text_pad = att if self.mask_missing else None
        kv = None  # the text keys and values of the previous layer
        for i in range(self.num_layers):
            fused = i >= start
            if fused:
                prefix = None
                if self.prefix == 'text':
                    src = kv if self.prefix_from == 'previous_layer' else self._text_kv(i, h)
                    prefix = None if src is None else (src[0], src[1], text_pad)
                vis, vkv = self._vision_layer(i, vis, vmask, prefix)
                tprefix = (vkv[0], vkv[1], vmask) if self.prefix == 'vision' else None
                h, kv = self._text_layer(i, h, att, vis if self.fusion_enabled else None,
                                         vmask, tprefix)
            else:
                h, kv = self._text_layer(i, h, att)
        return h, where

    def mask_logits(self, entity_index: Tensor, rel_type: Optional[Tensor] = None) -> Tensor:
        r"""The masked-LM logits at [MASK] restricted to the entity tokens, :math:`[B, N]`:
        unchecked indices (see :meth:`encode`)."""
        h, where = self.encode(entity_index, rel_type)
        x = self.mlm_transform(h[torch.arange(h.size(0), device=h.device), where])
        return x @ self.entity_embeddings.weight.t() + self.entity_bias

    # The KGEModel surface ######################################################################

    def prepare_scoring(self) -> None:
        r"""Nothing to prepare: every query runs the transformer."""
        return None

    def _score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        if head_index.numel() == 0:
            return self.entity_bias.new_zeros(0, self.num_nodes)
        return self.mask_logits(head_index.view(-1), rel_type.view(-1))

    def _forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        h, r, t = torch.broadcast_tensors(head_index, rel_type, tail_index)
        shape = h.shape
        h, r, t = h.reshape(-1), r.reshape(-1), t.reshape(-1)
        if h.numel() == 0:
            return self.entity_bias.new_zeros(shape)
        pairs, inv = torch.unique(torch.stack([h, r]), dim=1, return_inverse=True)
        logits = self.mask_logits(pairs[0], pairs[1])
        return logits[inv, t].view(shape)

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor, negatives):
        r"""Negative sampling: each positive and its candidates scored from the logits of
        their query (a head corruption as the inverse query of the tail)."""
        return self._grid_negatives(head_index, rel_type, tail_index, negatives)

    def score_queries(self, entity_index: Tensor, rel_type: Tensor) -> QueryScores:
        r"""The 1-N logits :math:`[B, N]` of queries :math:`(e, r, ?)`, :math:`r + R` the
        inverse (head) query."""
        return QueryScores([(None, self.mask_logits(entity_index, rel_type), None)], {},
                           {'entity_index': entity_index})

    # Stage 1 ###################################################################################

    def description_logits(self, entity_index: Tensor) -> Tensor:
        r"""Stage 1: the entity-token logits :math:`[B, N]` at [MASK] of ``The description
        of [MASK] is that <description of e> .`` (with the images of :math:`e`)."""
        (entity_index, ) = self._check('description_logits',
                                       self._entity_ids('entity_index', entity_index))
        return self.mask_logits(entity_index, None)

    def description_loss(self, entity_index: Tensor,
                         label_smoothing: Optional[float] = None) -> Tensor:
        r"""Stage 1's loss: each description predicts its entity, softmax cross-entropy
        with label smoothing (default: the model's)."""
        logits = self.description_logits(entity_index)
        target = F.one_hot(entity_index.long(), self.num_nodes)
        eps = self.label_smoothing if label_smoothing is None else label_smoothing
        return SoftmaxCrossEntropyLoss(eps)(logits, target)

    def pretraining_parameters(self) -> List[torch.nn.Parameter]:
        r"""What stage 1 trains: the token embeddings (BERT's word embeddings and the entity
        and relation tokens), as the authors train the parameters named ``word``."""
        return [self.text_embeddings.word_embeddings.weight, self.entity_embeddings.weight,
                self.relation_embeddings.weight]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'num_layers={self.num_layers}, num_fusion_layers={self.num_fusion_layers}, '
                f'visual={self.modalities})')


def _read_descriptions(path: str, names: Optional[Sequence[str]], N: int
                       ) -> List[Optional[str]]:
    r"""Descriptions from a ``name<TAB>text`` file (by entity name; without names, by line)."""
    rows = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            if '\t' in line:
                key, text = line.rstrip('\n').split('\t', 1)
                rows[key] = text.replace('\\n', ' ')
    if names is None:
        texts = list(rows.values())
        if len(texts) != N:
            raise ValueError(f"{path} has {len(texts)} descriptions for {N} entities")
        return texts
    return [rows.get(n) for n in names]


def pretrain_entity_tokens(model: MKGformer, epochs: int = 15, batch_size: int = 64,
                           lr: float = 5e-4, label_smoothing: float = 0.1,
                           weight_decay: float = 0.01, warmup: float = 0.1,
                           entity_index: Optional[Tensor] = None,
                           generator: Optional[torch.Generator] = None) -> List[float]:
    r"""MKGformer's stage 1: trains only the token embeddings
    (:meth:`MKGformer.pretraining_parameters`) to predict every entity from its description,
    :meth:`MKGformer.description_loss`, with AdamW and a linear warm-up and decay (the
    authors' :obj:`--pretrain 1` run: 15 epochs, batch 64, lr 5e-4, label smoothing 0.1,
    weight decay 0.01, 10% warm-up). The other parameters are frozen meanwhile and restored
    after.

    Args:
        model (MKGformer): The model (on its device).
        epochs (int, optional): (default: :obj:`15`)
        batch_size (int, optional): (default: :obj:`64`)
        lr (float, optional): (default: :obj:`5e-4`)
        label_smoothing (float, optional): (default: :obj:`0.1`)
        weight_decay (float, optional): (default: :obj:`0.01`)
        warmup (float, optional): The warm-up share of the steps. (default: :obj:`0.1`)
        entity_index (Tensor, optional): The entities to train on (default: all).
        generator (torch.Generator, optional): The shuffling.

    Returns:
        List[float]: The mean loss of each epoch.
    """
    epochs = positive_int('pretrain_entity_tokens', 'epochs', epochs)
    batch_size = positive_int('pretrain_entity_tokens', 'batch_size', batch_size)
    device = model.entity_bias.device
    ents = (torch.arange(model.num_nodes) if entity_index is None else
            torch.as_tensor(entity_index).long().cpu())
    params = model.pretraining_parameters()
    keep = {id(p) for p in params}
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(ents) / batch_size)
    warm = int(steps * warmup)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        return max(0.0, (steps - step) / max(1, steps - warm))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    history = []
    was_training = model.training
    model.train()
    try:
        for _ in range(epochs):
            perm = ents[torch.randperm(len(ents), generator=generator)]
            total = 0.0
            for start in range(0, len(perm), batch_size):
                idx = perm[start:start + batch_size].to(device)
                loss = model.description_loss(idx, label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * idx.numel()
            history.append(total / len(perm))
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(saved[n])
        model.train(was_training)
    return history
