import copy
import itertools
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.loss import symmetric_contrastive_loss

__all__ = ['CrossModalAlignment', 'multimodal_contrastive_loss', 'logit_scale_temperature']

#: CLIP's clamp of the learnable logit scale: :math:`1/\tau \leq 100`.
MAX_LOGIT_SCALE = math.log(100.0)


def logit_scale_temperature(logit_scale: Tensor) -> Tensor:
    r"""The temperature :math:`\tau = 1 / \exp(\min(s, \log 100))` of a CLIP-style
    learnable log-scale :math:`s = \log(1/\tau)`."""
    return 1.0 / logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def multimodal_contrastive_loss(views: Mapping[str, Tensor],
                                masks: Optional[Mapping[str, Tensor]],
                                temperature) -> Optional[Tensor]:
    r"""Eq. 8 (:func:`~torch_mmkg.nn.loss.symmetric_contrastive_loss`) averaged over the pairs
    of :obj:`views` (in their order), each over the rows that have both (all rows without
    :obj:`masks`); pairs with fewer than two such rows are skipped, and :obj:`None` is
    returned when none is left."""
    terms = []
    for a, b in itertools.combinations(list(views), 2):
        za, zb = views[a], views[b]
        if masks is not None:
            both = masks[a] & masks[b]
            za, zb = za[both], zb[both]
        if za.size(0) >= 2:
            terms.append(symmetric_contrastive_loss(za, zb, temperature))
    return torch.stack(terms).mean() if terms else None


class CrossModalAlignment(torch.nn.Module):
    r"""The cross-modal alignment (CMoA) of the `"Large Model-Driven Balanced Multimodal
    Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_ paper (LBMKGC), as a
    trainable stage that maps the features of every modality into one space where an
    entity's modalities agree.

    Each modality :math:`m` gets a head :math:`g_m` (linear, or a two-layer MLP) and its
    output is :math:`\mathbf{f}_m = g_m(\mathbf{x}_m) / \|g_m(\mathbf{x}_m)\|`. The heads
    and a learnable temperature :math:`\tau` are trained with the symmetric contrastive loss
    of Eq. 8 (:func:`~torch_mmkg.nn.loss.symmetric_contrastive_loss`) over the entities that
    have both modalities of a pair, averaged over all pairs of modalities:

    .. math::
        \mathcal{L}_{\mathrm{CMoA}} = \frac{1}{|\mathcal{P}|}\sum_{(a, b) \in \mathcal{P}}
        \mathcal{L}_{\mathrm{CLIP}}\big(g_a(\mathbf{X}_a), g_b(\mathbf{X}_b)\big).

    The paper aligns image and text with CLIP's pre-trained towers; here the heads are
    learned on the graph's own features, so any pair of modalities (text and numeric
    attributes on DB15K, for instance) can be aligned, offline. As in CLIP the temperature
    is learnt as :math:`\log(1/\tau)`, clamped so that :math:`1/\tau \leq 100`.

    Use :meth:`fit` on a graph and :meth:`transform` to replace its features by the aligned
    ones, or call :meth:`loss` inside a training loop (LBMKGC's ``alignment_weight``).

    Args:
        in_channels (Mapping[str, int]): Feature width :math:`F_m` of each modality (at
            least two).
        out_channels (int, optional): Width of the aligned space. (default: :obj:`256`)
        hidden_channels (int, optional): Hidden width of two-layer heads (:obj:`None`:
            linear heads). (default: :obj:`None`)
        temperature (float, optional): Initial :math:`\tau`. (default: :obj:`0.07`)
        learn_temperature (bool, optional): Learn :math:`\tau`. (default: :obj:`True`)

    Shapes:
        - **input:** a dict of :math:`[*, F_m]` features
        - **output:** a dict of :math:`[*, D]` unit-norm aligned features
    """
    def __init__(self, in_channels: Mapping[str, int], out_channels: int = 256,
                 hidden_channels: Optional[int] = None, temperature: float = 0.07,
                 learn_temperature: bool = True):
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"alignment needs at least two modalities, got "
                             f"{list(in_channels)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.modalities = list(in_channels)
        self.in_channels = {m: int(f) for m, f in in_channels.items()}
        self.out_channels = int(out_channels)

        def head(f: int) -> torch.nn.Module:
            if hidden_channels is None:
                return torch.nn.Linear(f, out_channels)
            return torch.nn.Sequential(torch.nn.Linear(f, hidden_channels), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden_channels, out_channels))

        self.heads = torch.nn.ModuleDict({m: head(int(f)) for m, f in in_channels.items()})
        init = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.logit_scale = torch.nn.Parameter(init)
        else:
            self.register_buffer('logit_scale', init)
        self._init_scale = float(init)

    def reset_parameters(self):
        for h in self.heads.values():
            for layer in (h if isinstance(h, torch.nn.Sequential) else [h]):
                if hasattr(layer, 'reset_parameters'):
                    layer.reset_parameters()
        with torch.no_grad():
            self.logit_scale.fill_(self._init_scale)

    @property
    def temperature(self) -> Tensor:
        r"""The current :math:`\tau`."""
        return logit_scale_temperature(self.logit_scale)

    @property
    def pairs(self) -> List[Tuple[str, str]]:
        return list(itertools.combinations(self.modalities, 2))

    def forward(self, features: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        return {m: F.normalize(self.heads[m](x), dim=-1) for m, x in features.items()}

    def loss(self, features: Mapping[str, Tensor],
             masks: Optional[Mapping[str, Tensor]] = None) -> Tensor:
        r"""Eq. 8 averaged over the pairs of modalities, each over the rows that have both
        (all rows without :obj:`masks`); pairs with fewer than two such rows are skipped
        (zero if none is left)."""
        out = self(features)
        loss = multimodal_contrastive_loss(
            {m: out[m] for m in self.modalities if m in out}, masks, self.temperature)
        return self.logit_scale.new_zeros(()) if loss is None else loss

    def fit(self, data, epochs: int = 100, batch_size: int = 1024, lr: float = 1e-3,
            weight_decay: float = 0.0, val_ratio: float = 0.1, seed: int = 0,
            progress: bool = True) -> Dict[str, list]:
        r"""Trains the heads and :math:`\tau` on the entities of :obj:`data` that have at
        least two of the modalities, with Adam, keeping the state of the epoch with the best
        loss on a held-out share :obj:`val_ratio` of those entities (all of them if it is
        0). Returns the per-epoch training and validation losses."""
        from tqdm.auto import tqdm
        feats, masks = self._graph_features(data)
        device = next(self.parameters()).device
        both = torch.stack([masks[m] for m in self.modalities]).sum(0) >= 2
        rows = both.nonzero().view(-1)
        if rows.numel() < 4:
            raise ValueError(f"alignment needs entities with at least two of "
                             f"{self.modalities}; the graph has {rows.numel()}")
        g = torch.Generator().manual_seed(int(seed))
        rows = rows[torch.randperm(rows.numel(), generator=g)]
        n_val = int(round(val_ratio * rows.numel()))
        val, train = rows[:n_val], rows[n_val:]
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        history = {'train': [], 'val': []}
        best, best_state = math.inf, None

        def batch(index: Tensor):
            return ({m: x[index].to(device) for m, x in feats.items()},
                    {m: k[index].to(device) for m, k in masks.items()})

        bar = tqdm(range(epochs), desc='CMoA alignment', disable=not progress)
        for _ in bar:
            self.train()
            perm = train[torch.randperm(train.numel(), generator=g)]
            total, steps = 0.0, 0
            for i in range(0, perm.numel(), batch_size):
                idx = perm[i:i + batch_size]
                if idx.numel() < 2:
                    continue
                loss = self.loss(*batch(idx))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            history['train'].append(total / max(steps, 1))
            score = history['train'][-1]
            if n_val >= 2:
                self.eval()
                with torch.no_grad():
                    score = float(self.loss(*batch(val)))
                history['val'].append(score)
            if score < best:
                best, best_state = score, copy.deepcopy(self.state_dict())
            bar.set_postfix(loss=f'{history["train"][-1]:.4f}', val=f'{score:.4f}')
        if best_state is not None:
            self.load_state_dict(best_state)
        self.eval()
        return history

    @torch.no_grad()
    def transform(self, data, batch_size: int = 8192):
        r"""A copy of :obj:`data` whose features of the aligned modalities are replaced by
        their :obj:`[N, D]` aligned features (rows of entities lacking a modality stay
        zero, masks unchanged)."""
        from torch_mmkg.data.mmkg import ENTITY, feature_key, validate_mmkg
        feats, masks = self._graph_features(data)
        device = next(self.parameters()).device
        out = copy.copy(data)
        self.eval()
        for m in self.modalities:
            x = feats[m]
            z = torch.cat([self.heads[m](x[i:i + batch_size].to(device)).cpu()
                           for i in range(0, x.size(0), batch_size)])
            z = F.normalize(z, dim=-1)
            z[~masks[m]] = 0.0
            out[ENTITY][feature_key(m)] = z
        return validate_mmkg(out)

    def _graph_features(self, data) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        from torch_mmkg.data.mmkg import modality_features
        have = modality_features(data)
        missing = [m for m in self.modalities if m not in have]
        if missing:
            raise ValueError(f"modalities {missing} are not in the graph (it has "
                             f"{list(have)})")
        for m in self.modalities:
            x, width = have[m][0], self.in_channels[m]
            if x.size(1) != width:
                raise ValueError(f"features of '{m}' have {x.size(1)} columns, the "
                                 f"alignment head expects {width}")
        return ({m: have[m][0].float() for m in self.modalities},
                {m: have[m][1] for m in self.modalities})

    @classmethod
    def from_data(cls, data, modalities: Optional[Sequence[str]] = None,
                  **kwargs) -> 'CrossModalAlignment':
        r"""An alignment of the graph's modalities (or the subset :obj:`modalities`)."""
        from torch_mmkg.data.mmkg import modality_features
        have = modality_features(data)
        names = list(have) if modalities is None else list(modalities)
        unknown = [m for m in names if m not in have]
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the graph (it has "
                             f"{list(have)})")
        return cls({m: have[m][0].size(1) for m in names}, **kwargs)

    def extra_repr(self) -> str:
        return f'modalities={self.modalities}, out_channels={self.out_channels}'
