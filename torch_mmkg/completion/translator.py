import copy
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.mmkg import ENTITY, feature_key, mask_key
from .base import ModalityCompleter, check_target, original_mask

__all__ = ['TranslatorCompleter', 'completion_cosine']


class TranslatorCompleter(ModalityCompleter):
    r"""A learned cross-modal translator for the modality completion (LvMC) of the `"Large
    Model-Driven Balanced Multimodal Knowledge Graph Completion"
    <https://github.com/guoynow/LBMKGC>`_ paper, the offline alternative to its generative
    completer (:class:`~torch_mmkg.completion.DiffusionImageCompleter`).

    For every source modality :math:`s` an MLP :math:`T_s` is fit on the entities that
    originally have both :math:`s` and the target :math:`m`, in the target's standardised
    coordinates :math:`\tilde{\mathbf{x}}_m = (\mathbf{x}_m - \boldsymbol{\mu}) /
    \boldsymbol{\sigma}`,

    .. math::
        \min_{T_s} \frac{1}{|E_{s,m}|}\sum_{e \in E_{s,m}}
        \big\|T_s(\mathbf{x}_s(e)) - \tilde{\mathbf{x}}_m(e)\big\|_2^2,

    keeping the epoch with the lowest loss on a held-out share of those entities. An entity
    lacking :math:`m` is completed by the mean translation of the sources it has,
    :math:`\hat{\mathbf{x}}_m(e) = \boldsymbol{\mu} + \boldsymbol{\sigma} \odot
    \frac{1}{|S_e|}\sum_{s \in S_e} T_s(\mathbf{x}_s(e))`. It works for any modalities of
    any dataset, and in front of any model, but it learns from examples: a target that no
    entity has (e.g. every image dropped, the paper's :math:`\eta = 1`) cannot be completed
    by it; the generative :class:`~torch_mmkg.completion.DiffusionImageCompleter` needs none.

    Args:
        hidden_channels (int, optional): Hidden width of each translator.
            (default: :obj:`512`)
        dropout (float, optional): Dropout of the hidden layer. (default: :obj:`0.1`)
        epochs (int, optional): Maximum training epochs. (default: :obj:`200`)
        batch_size (int, optional): (default: :obj:`256`)
        lr (float, optional): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): (default: :obj:`1e-5`)
        val_ratio (float, optional): Held-out share for model selection.
            (default: :obj:`0.1`)
        patience (int, optional): Stop after this many epochs without improvement.
            (default: :obj:`20`)
        seed (int, optional): (default: :obj:`0`)
        device (torch.device, optional): Where to train (default: CPU).
        progress (bool, optional): Show a progress bar. (default: :obj:`True`)

    Shapes:
        - **input:** a graph in the :mod:`torch_mmkg` layout
        - **output:** :meth:`complete` :math:`[|\mathrm{index}|, F_m]`
    """
    def __init__(self, hidden_channels: int = 512, dropout: float = 0.1, epochs: int = 200,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-5,
                 val_ratio: float = 0.1, patience: int = 20, seed: int = 0,
                 device=None, progress: bool = True):
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"val_ratio must lie in [0, 1), got {val_ratio}")
        self.hidden_channels = int(hidden_channels)
        self.dropout = float(dropout)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.val_ratio = float(val_ratio)
        self.patience = int(patience)
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.progress = bool(progress)
        self.target: Optional[str] = None
        self.sources: List[str] = []
        self.translators = torch.nn.ModuleDict()
        self.history: Dict[str, Dict[str, list]] = {}
        self.mean = self.std = None

    def _mlp(self, f_in: int, f_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(f_in, self.hidden_channels),
                                   torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
                                   torch.nn.Linear(self.hidden_channels, f_out))

    def fit(self, data: HeteroData, target: str,
            sources: Optional[Sequence[str]] = None) -> 'TranslatorCompleter':
        from tqdm.auto import tqdm
        mods = check_target(data, target)
        sources = [m for m in mods if m != target] if sources is None else list(sources)
        bad = [s for s in sources if s not in mods or s == target]
        if bad or not sources:
            raise ValueError(f"sources must be modalities of the graph other than the "
                             f"target '{target}', got {sources} (graph: {mods})")
        ent = data[ENTITY]
        y, has_y = ent[feature_key(target)].float(), original_mask(data, target)
        if int(has_y.sum()) < 2:
            raise ValueError(
                f"TranslatorCompleter cannot complete '{target}': it is originally present "
                f"for {int(has_y.sum())} of {ent.num_nodes} entities, and a translator learns "
                f"{sources} -> '{target}' from entities that have both (at least 2). This "
                f"happens when every '{target}' row is missing, e.g. after "
                f"DropModality(1.0) (LBMKGC's eta = 1). Keep some '{target}' features "
                f"(eta < 1); or use a completer that needs no examples, such as "
                f"DiffusionImageCompleter.from_pretrained(...) (images generated from the "
                f"entity texts, LBMKGC's LvMC) in CompleteModality('{target}', ...); or fill "
                f"the rows at random with RandomFillModality(['{target}'], loc=..., "
                f"scale=...) (the baselines' random initialisation)")
        self.mean = y[has_y].mean(0)
        self.std = y[has_y].std(0).clamp_min(1e-6)
        y = (y - self.mean) / self.std
        self.target, self.sources = target, sources
        self.translators = torch.nn.ModuleDict()
        g = torch.Generator().manual_seed(self.seed)
        for s in sources:
            both = (has_y & original_mask(data, s)).nonzero().view(-1)
            if both.numel() < 2:
                others = [o for o in sources if o != s]
                raise ValueError(
                    f"no translator '{s}' -> '{target}' can be fit: {both.numel()} entities "
                    f"originally have both (at least 2 are needed); leave '{s}' out of the "
                    f"sources{f' (e.g. sources={others})' if others else ''}, or use a "
                    f"completer that needs no examples (DiffusionImageCompleter)")
            x = ent[feature_key(s)].float()
            torch.manual_seed(self.seed)
            net = self._mlp(x.size(1), y.size(1)).to(self.device)
            both = both[torch.randperm(both.numel(), generator=g)]
            n_val = int(round(self.val_ratio * both.numel()))
            val, train = both[:n_val], both[n_val:]
            opt = torch.optim.Adam(net.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            hist = {'train': [], 'val': []}
            best, best_state, stale = math.inf, None, 0
            bar = tqdm(range(self.epochs), desc=f'Translator {s} -> {target}',
                       disable=not self.progress)
            for _ in bar:
                net.train()
                perm = train[torch.randperm(train.numel(), generator=g)]
                total = 0.0
                for i in range(0, perm.numel(), self.batch_size):
                    idx = perm[i:i + self.batch_size]
                    loss = F.mse_loss(net(x[idx].to(self.device)), y[idx].to(self.device))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * idx.numel()
                hist['train'].append(total / max(train.numel(), 1))
                score = hist['train'][-1]
                if n_val:
                    net.eval()
                    with torch.no_grad():
                        score = float(F.mse_loss(net(x[val].to(self.device)),
                                                 y[val].to(self.device)))
                    hist['val'].append(score)
                bar.set_postfix(train=f'{hist["train"][-1]:.4f}', val=f'{score:.4f}')
                if score < best - 1e-6:
                    best, best_state, stale = score, copy.deepcopy(net.state_dict()), 0
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
            net.load_state_dict(best_state)
            net.eval()
            self.translators[s] = net
            self.history[s] = hist
        return self

    def _check_fitted(self, target: str):
        if self.target is None:
            raise RuntimeError("the translator is not fitted: call fit(data, target) first")
        if target != self.target:
            raise ValueError(f"the translator was fit for '{self.target}', not '{target}'")

    def completable(self, data: HeteroData, target: str) -> Tensor:
        self._check_fitted(target)
        ent = data[ENTITY]
        have = torch.zeros(ent.num_nodes, dtype=torch.bool)
        for s in self.sources:
            have |= ent[mask_key(s)].cpu()
        return have & ~ent[mask_key(target)].cpu()

    @torch.no_grad()
    def complete(self, data: HeteroData, target: str, index: Tensor) -> Tensor:
        self._check_fitted(target)
        ent = data[ENTITY]
        index = torch.as_tensor(index, dtype=torch.long).view(-1).cpu()
        N = ent.num_nodes
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= N):
            raise ValueError(f"entity ids out of range [0, {N}): "
                             f"{index[(index < 0) | (index >= N)][:5].tolist()}")
        total = torch.zeros(index.numel(), self.mean.numel())
        count = torch.zeros(index.numel())
        for s in self.sources:
            has = ent[mask_key(s)][index].cpu()
            if bool(has.any()):
                x = ent[feature_key(s)][index[has]].float().to(self.device)
                total[has] += self.translators[s](x).cpu()
                count[has] += 1
        if bool((count == 0).any()):
            bad = index[count == 0]
            raise ValueError(f"entities {bad[:5].tolist()} have none of the source "
                             f"modalities {self.sources}")
        return self.mean + self.std * total / count[:, None]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(target={self.target!r}, sources={self.sources}, '
                f'hidden_channels={self.hidden_channels})')


def completion_cosine(completer: ModalityCompleter, data: HeteroData, target: str,
                      holdout: float = 0.2, seed: int = 0,
                      sources: Optional[Sequence[str]] = None) -> Dict[str, float]:
    r"""How well :obj:`completer` restores a modality it never saw: the features of
    :obj:`target` are hidden for a random share :obj:`holdout` of the entities that have it
    and at least one source, the completer is fit on the rest and completes the hidden
    rows. Returns the mean and median cosine similarity between completed and real
    features, the same for the baseline that predicts the mean target feature of the
    fitting entities, and the number of held-out entities."""
    mods = check_target(data, target)
    src = [m for m in mods if m != target] if sources is None else list(sources)
    ent = data[ENTITY]
    has_src = torch.zeros(ent.num_nodes, dtype=torch.bool)
    for s in src:
        has_src |= ent[mask_key(s)].cpu()
    cand = (original_mask(data, target).cpu() & has_src).nonzero().view(-1)
    if cand.numel() < 10:
        raise ValueError(f"only {cand.numel()} entities originally have '{target}' and one of "
                         f"{src}: too few to hold out some and fit the completer on the rest "
                         f"(at least 10 are needed; with every '{target}' row missing, e.g. "
                         f"after DropModality(1.0), there is nothing to compare completed "
                         f"features with)")
    g = torch.Generator().manual_seed(int(seed))
    hidden = cand[torch.randperm(cand.numel(), generator=g)[:max(1, int(holdout *
                                                                        cand.numel()))]]
    masked = copy.copy(data)
    masked[ENTITY][mask_key(target)] = ent[mask_key(target)].clone()
    masked[ENTITY][mask_key(target)][hidden] = False
    completer.fit(masked, target, src)
    pred = completer.complete(masked, target, hidden)
    real = ent[feature_key(target)][hidden].float()
    keep = masked[ENTITY][mask_key(target)]
    base = ent[feature_key(target)][keep].float().mean(0, keepdim=True).expand_as(real)
    cos = F.cosine_similarity(pred, real, dim=-1)
    cos_base = F.cosine_similarity(base, real, dim=-1)
    return {'cosine': float(cos.mean()), 'cosine_median': float(cos.median()),
            'baseline_cosine': float(cos_base.mean()),
            'baseline_cosine_median': float(cos_base.median()),
            'num_heldout': int(hidden.numel())}
