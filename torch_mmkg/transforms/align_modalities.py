from typing import Optional, Sequence

import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.transforms.drop_modality import _check_modalities, _resolve_modalities


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(value, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{name}' must be a number, got {value!r}")
    value = float(value)
    if not (value >= 0.0 if allow_zero else value > 0.0) or value == float('inf'):
        raise ValueError(f"'{name}' must be a finite {'non-negative' if allow_zero else 'positive'}"
                         f" number, got {value}")
    return value


@functional_transform('align_modalities')
class AlignModalities(BaseTransform):
    r"""Replaces the features of several modalities by features aligned in one space, the
    cross-modal alignment stage (CMoA) of the `"Large Model-Driven Balanced Multimodal
    Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_ paper, as a transform
    that runs before training (functional name: :obj:`align_modalities`).

    A :class:`~torch_mmkg.nn.CrossModalAlignment` with one head :math:`g_m` per modality is
    fit on the graph (:meth:`~torch_mmkg.nn.CrossModalAlignment.fit`: Adam on the symmetric
    contrastive loss of every pair of modalities over the entities that have both, keeping the
    epoch with the lowest held-out loss),

    .. math::
        \mathcal{L}_{\mathrm{CMoA}} = \frac{1}{|\mathcal{P}|}\sum_{(a, b) \in \mathcal{P}}
        \mathcal{L}_{\mathrm{CLIP}}\big(g_a(\mathbf{X}_a), g_b(\mathbf{X}_b)\big),

    and the feature row of every present (entity, modality) pair becomes
    :math:`g_m(\mathbf{x}_m) / \|g_m(\mathbf{x}_m)\|` (:obj:`[N, out_channels]`); rows whose
    mask is :obj:`False` become zeros and masks are unchanged. Completed rows
    (:class:`~torch_mmkg.transforms.CompleteModality`) count as present, so completing first and
    aligning second is the paper's order (LvMC, then CMoA). Other modalities stay untouched.

    The heads are initialised from :obj:`seed` and trained with a generator seeded by it, on
    the CPU unless :obj:`device` says otherwise, so the same graph and seed give the same
    features; the global random number generator is left as it was. The fitted alignment is
    kept as :obj:`self.alignment` and its loss curves as :obj:`self.history`.

    Args:
        modalities (Sequence[str], optional): The modalities to align (at least two). If
            :obj:`None`, all modalities of the graph. (default: :obj:`None`)
        out_channels (int, optional): The width :math:`D` of the aligned space.
            (default: :obj:`256`)
        hidden_channels (int, optional): Hidden width of two-layer heads; :obj:`None` for
            linear heads. (default: :obj:`None`)
        temperature (float, optional): The initial temperature :math:`\tau > 0`.
            (default: :obj:`0.07`)
        learn_temperature (bool, optional): Learn :math:`\tau`. (default: :obj:`True`)
        epochs (int, optional): Training epochs. (default: :obj:`100`)
        batch_size (int, optional): Entities per step. (default: :obj:`1024`)
        lr (float, optional): Adam's learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam's weight decay. (default: :obj:`0.0`)
        val_ratio (float, optional): The held-out share of the entities for model selection,
            in :math:`[0, 1)`. (default: :obj:`0.1`)
        seed (int, optional): The seed of the heads' initialisation and of the batches.
            (default: :obj:`0`)
        device (str, optional): Where to train; :obj:`None` for the CPU. The features stay on
            the CPU. (default: :obj:`None`)
        progress (bool, optional): Show a progress bar. (default: :obj:`False`)
    """
    def __init__(
        self,
        modalities: Optional[Sequence[str]] = None,
        out_channels: int = 256,
        hidden_channels: Optional[int] = None,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        epochs: int = 100,
        batch_size: int = 1024,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        val_ratio: float = 0.1,
        seed: int = 0,
        device: Optional[str] = None,
        progress: bool = False,
    ) -> None:
        self.modalities = _check_modalities(modalities)
        if self.modalities is not None and len(self.modalities) < 2:
            raise ValueError(f"'modalities' must name at least two modalities to align, got "
                             f"{self.modalities}")
        self.out_channels = _positive_int(out_channels, 'out_channels')
        self.hidden_channels = (None if hidden_channels is None else
                                _positive_int(hidden_channels, 'hidden_channels'))
        self.temperature = _positive_float(temperature, 'temperature')
        if not isinstance(learn_temperature, bool):
            raise ValueError(f"'learn_temperature' must be True or False, got "
                             f"{learn_temperature!r}")
        self.learn_temperature = learn_temperature
        self.epochs = _positive_int(epochs, 'epochs')
        self.batch_size = _positive_int(batch_size, 'batch_size')
        self.lr = _positive_float(lr, 'lr')
        self.weight_decay = _positive_float(weight_decay, 'weight_decay', allow_zero=True)
        val_ratio = _positive_float(val_ratio, 'val_ratio', allow_zero=True)
        if not val_ratio < 1.0:
            raise ValueError(f"'val_ratio' must lie in [0, 1), got {val_ratio}")
        self.val_ratio = val_ratio
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"'seed' must be an integer, got {seed!r}")
        self.seed = seed
        self.device = None if device is None else str(torch.device(device))
        self.progress = bool(progress)
        self.alignment = None
        self.history = None

    def forward(self, data: HeteroData) -> HeteroData:
        from torch_mmkg.nn.alignment import CrossModalAlignment
        modalities = _resolve_modalities(data, self.modalities)
        if len(modalities) < 2:
            raise ValueError(f"AlignModalities needs at least two modalities; the graph has "
                             f"{modalities}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            align = CrossModalAlignment.from_data(
                data, modalities, out_channels=self.out_channels,
                hidden_channels=self.hidden_channels, temperature=self.temperature,
                learn_temperature=self.learn_temperature)
            if self.device is not None:
                align = align.to(self.device)
            self.history = align.fit(data, epochs=self.epochs, batch_size=self.batch_size,
                                     lr=self.lr, weight_decay=self.weight_decay,
                                     val_ratio=self.val_ratio, seed=self.seed,
                                     progress=self.progress)
        self.alignment = align
        return align.transform(data)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(modalities={self.modalities}, '
                f'out_channels={self.out_channels}, epochs={self.epochs}, seed={self.seed})')
