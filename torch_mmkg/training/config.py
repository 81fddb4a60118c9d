import math
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional, Tuple

from torch_mmkg.nn.loss import LOSSES
from torch_mmkg.nn.regimes import REGIMES  # noqa: F401 (the names a config accepts)
from torch_mmkg.registry import Registry, UnknownComponentError

#: The validation metrics a run can be selected on, and whether higher is better.
METRICS: Dict[str, bool] = {'mrr': True, 'mr': False, 'hits@1': True, 'hits@3': True,
                            'hits@10': True}

#: The optimizers of :class:`~torch_mmkg.training.Trainer`, by name (the trainer maps each to
#: its :mod:`torch.optim` class).
OPTIMIZERS = Registry('optimizer')
for _name in ('adam', 'adamw', 'adagrad', 'sgd'):
    OPTIMIZERS.register(_name, _name)

#: How a negative sampler chooses the side (head or tail) to corrupt.
SAMPLING_STRATEGIES = Registry('sampling strategy')
for _name in ('uniform', 'bernoulli'):
    SAMPLING_STRATEGIES.register(_name, _name)
del _name

#: The options that switch on an adversarial training add-on (at most one per run), each
#: a mapping of its class's keyword arguments, and the name of that class in
#: :mod:`torch_mmkg.training`.
ADVERSARIES: Dict[str, str] = {'comat': 'CoMAT', 'mat': 'MAT',
                               'mmkrl_adversary': 'MMKRLAdversary'}

#: The options that may change when a run is resumed: how long it runs, what it prints and
#: where; everything else would make the resumed run differ from an uninterrupted one.
RESUMABLE_CHANGES: Tuple[str, ...] = ('epochs', 'max_minutes', 'patience', 'progress', 'test',
                                      'checkpoint_every', 'eval_batch_size', 'device')


def _type_error(name: str, value: Any, expected: str) -> str:
    shown = repr(value) if not isinstance(value, str) else f"the string {value!r}"
    hint = ''
    if isinstance(value, str):
        try:
            float(value)
            hint = (" (YAML 1.1 parsers such as PyYAML read 1e-3 without a decimal point as a "
                    "string; write a number, e.g. 1.0e-3)")
        except ValueError:
            pass
    return f"{name} must be {expected}, got {shown}{hint}"


def _check_type(name: str, value: Any, tp: Any) -> Optional[str]:
    r"""The error message if :obj:`value` does not fit the annotation :obj:`tp`, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        return None if isinstance(value, bool) else _type_error(name, value, 'true or false')
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return _type_error(name, value, 'an integer')
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _type_error(name, value, 'a number')
        if not math.isfinite(value):
            return f"{name} must be finite, got {value}"
        return None
    if tp is str:
        return None if isinstance(value, str) else _type_error(name, value, 'a string')
    origin = typing.get_origin(tp) or tp
    if origin is dict and not isinstance(value, dict):
        return _type_error(name, value, 'a mapping')
    return None


@dataclass
class TrainConfig:
    r"""Every option of :class:`~torch_mmkg.training.Trainer`, with its default.

    Args:
        epochs (int): Passes over the training triples. (default: :obj:`100`)
        batch_size (int): Positives (or 1-N queries) per batch. (default: :obj:`1024`)
        lr (float): Learning rate. (default: :obj:`1e-3`)
        optimizer (str): :obj:`"adam"`, :obj:`"adamw"`, :obj:`"adagrad"` or :obj:`"sgd"`
            (:data:`OPTIMIZERS`). (default: :obj:`"adam"`)
        weight_decay (float): (default: :obj:`0.0`)
        regime (str, optional): :obj:`"negative_sampling"` (alias :obj:`"ns"`,
            :obj:`"negatives"`) or :obj:`"1-n"` (alias :obj:`"one_to_n"`, :obj:`"1n"`), see
            :data:`REGIMES`; :obj:`None` takes the model's default
            (:attr:`KGEModel.default_regime`). Every model trains under either.
            (default: :obj:`None`)
            Besides: :obj:`"kbgan"` (adversarial negatives from a generator model,
            :class:`~torch_mmkg.nn.KBGAN`), :obj:`"mans"` (modality-aware negatives,
            :class:`~torch_mmkg.nn.MANS`) and :obj:`"mmrns"` (relation-enhanced negatives
            sampled by a cross-modal attention, :class:`~torch_mmkg.nn.MMRNS`), negative
            sampling with :obj:`num_negatives`, :obj:`sampling` and :obj:`corrupt_side_per`
            and options of their own (:obj:`regime_args`).
        regime_args (dict, optional): The keyword arguments of a regime with options of its
            own (:obj:`"kbgan"`, :obj:`"mans"`, :obj:`"mmrns"`), e.g.
            :obj:`{"generator": "distmult", "num_candidates": 20}`; its trainable parts join
            the optimiser (with their own learning rate where given) and the checkpoints.
            (default: :obj:`None`)
        loss (str, optional): The regime's loss by name (:data:`~torch_mmkg.nn.loss.LOSSES`):
            :obj:`"self_adversarial"`, :obj:`"margin"`, :obj:`"softplus"` for negative
            sampling, :obj:`"bce"`, :obj:`"softmax"` for 1-N; :obj:`None` takes the model's
            own where it fits the regime, else :obj:`"softplus"` / :obj:`"bce"`.
            (default: :obj:`None`)
        label_smoothing (float, optional): :math:`\epsilon \in [0, 1)` of a 1-N loss
            (:obj:`None`: the loss's default). (default: :obj:`None`)
        num_negatives (int): Negatives per positive :math:`K`. (default: :obj:`128`)
        sampling (str): :obj:`"uniform"` or :obj:`"bernoulli"` head/tail choice
            (:data:`SAMPLING_STRATEGIES`). (default: :obj:`"uniform"`)
        filter_negatives (bool, optional): Never draw a known training triple as a negative
            (also with :obj:`twins`); :obj:`None` takes the model's default
            (:attr:`KGEModel.default_filter_negatives
            <torch_mmkg.nn.KGEModel.default_filter_negatives>`: :obj:`True` for VBKGC, whose
            Eq. 14 filters, else :obj:`False`), resolved by the
            :class:`~torch_mmkg.training.Trainer`. (default: :obj:`None`)
        twins (bool): Twins negative sampling (VBKGC) for models with separate structural
            and multi-modal embeddings. (default: :obj:`False`)
        corrupt_side_per (str): Draw the corrupted side (head or tail, by :obj:`sampling`)
            once per :obj:`"positive"` or independently for every :obj:`"negative"`, as the
            OpenKE sampler of the NATIVE, AdaMF-MAT and LBMKGC code bases does.
            (default: :obj:`"positive"`)
        sample_with_replacement (bool): Draw each epoch's positives uniformly *with*
            replacement (as many draws as training triples, seeded by :obj:`seed`), as
            OpenKE's sampler does, instead of a permutation. (default: :obj:`False`)
        eval_every (int): Validate every this many epochs (and after the last).
            (default: :obj:`10`)
        eval_batch_size (int, optional): Queries per evaluation batch (:obj:`None`: sized
            to the number of entities). (default: :obj:`None`)
        val_split (str): :obj:`"val_clean"` (validation minus triples leaked from train,
            see :func:`~torch_mmkg.data.clean_val_mask`) or :obj:`"val"`.
            (default: :obj:`"val_clean"`)
        metric (str): The validation metric of model selection: :obj:`"mrr"`,
            :obj:`"hits@1"`, :obj:`"hits@3"`, :obj:`"hits@10"` (maximised) or :obj:`"mr"`
            (minimised). (default: :obj:`"mrr"`)
        patience (int, optional): Stop after this many validations without improvement
            (:math:`\geq 1`). (default: :obj:`None`)
        max_minutes (float, optional): Stop training after this wall-clock budget
            (:math:`> 0`; the selected model is still tested). (default: :obj:`None`)
        checkpoint_every (int, optional): Save a resumable checkpoint every this many epochs
            (:obj:`0`: never; needs an output directory); :obj:`None` checkpoints every epoch
            when the trainer has an output directory, else never, resolved by the
            :class:`~torch_mmkg.training.Trainer`. (default: :obj:`None`)
        grad_clip (float, optional): Clip the gradient norm to this value (:math:`> 0`).
            (default: :obj:`None`)
        divergence_factor (float, optional): Stop with
            :class:`~torch_mmkg.training.TrainingDivergedError` when an epoch's mean loss
            exceeds this many times the first epoch's (floored at 1 in magnitude), e.g. a
            learning rate that sends finite losses to :math:`10^{18}`; :obj:`None` disables
            the check. (default: :obj:`1e3`)
        seed (int): Seeds the model initialisation, shuffling and sampling.
            (default: :obj:`0`)
        deterministic (bool, optional): Run training with
            :func:`torch.use_deterministic_algorithms` (warning, not failing, on an operation
            without a deterministic implementation), so that a seed gives the same bits on
            the same machine. On a multi-threaded CPU the gradient of a gather with repeated
            ids (an entity in several triples of a batch) otherwise sums in the order threads
            happen to run, and two runs drift apart. :obj:`None` turns it on for CPU devices,
            where it is even faster (0.78× the seconds per epoch of RotatE and 0.88× of
            NATIVE on TIVA, 2 cores), and off for CUDA, where deterministic kernels are
            slower. (default: :obj:`None`)
        device (str): :obj:`"auto"` (CUDA when available), :obj:`"cpu"`, :obj:`"cuda:1"`...
            (default: :obj:`"auto"`)
        progress (bool): tqdm progress bars. (default: :obj:`True`)
        test (bool): Evaluate the selected model on the test split at the end.
            (default: :obj:`True`)
        precision (str): :obj:`"fp32"`, or :obj:`"bf16"` to train under
            :func:`torch.autocast` with bfloat16 where the device supports it (CUDA with bf16,
            CPUs); validation and test always score in float32, so the filtered ranking is
            exact. (default: :obj:`"fp32"`)
        exclude_query_entity (bool): In evaluation, the query entity is no candidate of its
            own query: :math:`(h, r, ?)` does not rank :math:`h` and :math:`(?, r, t)` does
            not rank :math:`t`, unless it is the true answer (:math:`h = t`). Validation and
            test both; the results state it. (default: :obj:`False`)
        comat (dict, optional): Train with :class:`~torch_mmkg.training.CoMAT` adversarial
            modality augmentation, with these keyword arguments (:obj:`{}` for its
            defaults; the generator's learning rate defaults to :obj:`lr`); :obj:`None`
            trains without it. (default: :obj:`None`)
        mat (dict, optional): Train with :class:`~torch_mmkg.training.MAT` (AdaMF-MAT's
            modality-adversarial training) with these keyword arguments (:obj:`{}` for its
            defaults); not together with :obj:`comat`. (default: :obj:`None`)
        mmkrl_adversary (dict, optional): Train :class:`~torch_mmkg.nn.MMKRL` with its
            adversarial training, :class:`~torch_mmkg.training.MMKRLAdversary`, with these
            keyword arguments (:obj:`{}` for its defaults); not together with :obj:`comat`
            or :obj:`mat`. (default: :obj:`None`)

    The names of :obj:`optimizer`, :obj:`regime` and :obj:`sampling` may be given in any
    case, with :obj:`'-'`, :obj:`'_'` or spaces anywhere, or as an alias; the config stores
    the canonical name (:obj:`TrainConfig(regime='One-To-N').regime == '1-n'`).
    """
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = 'adam'
    weight_decay: float = 0.0
    regime: Optional[str] = None
    regime_args: Optional[Dict[str, Any]] = None
    loss: Optional[str] = None
    label_smoothing: Optional[float] = None
    num_negatives: int = 128
    sampling: str = 'uniform'
    filter_negatives: Optional[bool] = None
    twins: bool = False
    corrupt_side_per: str = 'positive'
    sample_with_replacement: bool = False
    eval_every: int = 10
    eval_batch_size: Optional[int] = None
    val_split: str = 'val_clean'
    metric: str = 'mrr'
    patience: Optional[int] = None
    max_minutes: Optional[float] = None
    checkpoint_every: Optional[int] = None
    grad_clip: Optional[float] = None
    divergence_factor: Optional[float] = 1e3
    seed: int = 0
    deterministic: Optional[bool] = None
    device: str = 'auto'
    progress: bool = True
    test: bool = True
    precision: str = 'fp32'
    exclude_query_entity: bool = False
    comat: Optional[Dict[str, Any]] = None
    mat: Optional[Dict[str, Any]] = None
    mmkrl_adversary: Optional[Dict[str, Any]] = None

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            msg = _check_type(f.name, getattr(self, f.name), hints[f.name])
            if msg:
                raise ValueError(f"TrainConfig: {msg}")
        # Names in any case or an alias; the canonical one is stored, so that saved configs
        # and checkpoints compare equal whatever spelling a run was started with.
        try:
            self.optimizer = OPTIMIZERS.canonical(self.optimizer)
            if self.regime is not None:
                self.regime = REGIMES.canonical(self.regime)
            if self.loss is not None:
                self.loss = LOSSES.canonical(self.loss)
            self.sampling = SAMPLING_STRATEGIES.canonical(self.sampling)
        except UnknownComponentError as e:
            raise ValueError(f"TrainConfig: {e}") from None
        checks = [
            (self.epochs >= 1, 'epochs must be >= 1'),
            (self.batch_size >= 1, 'batch_size must be >= 1'),
            (self.lr > 0, 'lr must be > 0'),
            (self.num_negatives >= 1, 'num_negatives must be >= 1'),
            (self.eval_every >= 1, 'eval_every must be >= 1'),
            (self.val_split in ('val', 'val_clean'), "val_split must be 'val' or 'val_clean'"),
            (self.corrupt_side_per in ('positive', 'negative'),
             f"corrupt_side_per must be 'positive' or 'negative', got "
             f"{self.corrupt_side_per!r}"),
            (self.precision in ('fp32', 'bf16'),
             f"precision must be 'fp32' or 'bf16', got {self.precision!r}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 0,
             'checkpoint_every must be None or >= 0'),
            (self.metric in METRICS, f"metric must be one of {sorted(METRICS)}, got "
             f"{self.metric!r}"),
            (self.patience is None or self.patience >= 1,
             f'patience must be None or >= 1, got {self.patience}'),
            (self.max_minutes is None or self.max_minutes > 0,
             f'max_minutes must be None or > 0, got {self.max_minutes}'),
            (self.grad_clip is None or self.grad_clip > 0,
             f'grad_clip must be None or > 0 (a negative norm would reverse the gradient), '
             f'got {self.grad_clip}'),
            (self.divergence_factor is None or self.divergence_factor > 1,
             f'divergence_factor must be None or > 1, got {self.divergence_factor}'),
            (self.eval_batch_size is None or self.eval_batch_size >= 1,
             f'eval_batch_size must be None or >= 1, got {self.eval_batch_size}'),
            (self.weight_decay >= 0, f'weight_decay must be >= 0, got {self.weight_decay}'),
            (self.label_smoothing is None or 0 <= self.label_smoothing < 1,
             f'label_smoothing must be None or in [0, 1), got {self.label_smoothing}'),
            (self.seed >= 0, f'seed must be >= 0, got {self.seed}'),
            (self.comat is None or isinstance(self.comat, dict),
             'comat must be None or a mapping of CoMAT options'),
            (self.regime_args is None or isinstance(self.regime_args, dict),
             'regime_args must be None or a mapping of the regime\'s options'),
            (self.mat is None or isinstance(self.mat, dict),
             'mat must be None or a mapping of MAT options'),
            (self.mmkrl_adversary is None or isinstance(self.mmkrl_adversary, dict),
             'mmkrl_adversary must be None or a mapping of MMKRLAdversary options'),
            (sum(getattr(self, k) is not None for k in ADVERSARIES) <= 1,
             f'{", ".join(k for k in ADVERSARIES if getattr(self, k) is not None)} are '
             f'different adversarial trainings; give one of {", ".join(ADVERSARIES)}'),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {msg}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'TrainConfig':
        r"""Builds a config from a mapping, rejecting unknown keys by name."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(names)}")
        return cls(**d)

    def adversary(self) -> Optional[Tuple[str, Dict[str, Any]]]:
        r"""The adversarial training switched on, as :obj:`(option, keyword arguments)`
        (one of :data:`ADVERSARIES`), or :obj:`None`."""
        on = [(k, getattr(self, k)) for k in ADVERSARIES if getattr(self, k) is not None]
        return on[0] if on else None

    @property
    def maximize(self) -> bool:
        r"""Whether a higher value of :obj:`metric` is better."""
        return METRICS[self.metric]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def resume_conflicts(self, saved: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
        r"""The options that differ from :obj:`saved` (the config of a checkpoint) and may not
        change on resume (all but :data:`RESUMABLE_CHANGES`), as
        ``{name: (saved value, this value)}``. Options :obj:`saved` lacks (written by an older
        version) count as their defaults."""
        now = self.to_dict()
        defaults = TrainConfig().to_dict()
        out = {}
        for name, value in now.items():
            if name in RESUMABLE_CHANGES:
                continue
            before = saved.get(name, defaults[name])
            if before != value:
                out[name] = (before, value)
        return out
