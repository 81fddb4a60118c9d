from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional


@dataclass
class TrainConfig:
    r"""Every option of :class:`~torch_mmkg.training.Trainer`, with its default.

    Args:
        epochs (int): Passes over the training triples. (default: :obj:`100`)
        batch_size (int): Positives (or 1-N queries) per batch. (default: :obj:`1024`)
        lr (float): Learning rate. (default: :obj:`1e-3`)
        optimizer (str): :obj:`"adam"`, :obj:`"adamw"`, :obj:`"adagrad"` or :obj:`"sgd"`.
            (default: :obj:`"adam"`)
        weight_decay (float): (default: :obj:`0.0`)
        regime (str, optional): :obj:`"negative_sampling"` or :obj:`"1-n"`; :obj:`None`
            takes the model's default (:attr:`KGEModel.one_to_n`). (default: :obj:`None`)
        num_negatives (int): Negatives per positive :math:`K`. (default: :obj:`128`)
        sampling (str): :obj:`"uniform"` or :obj:`"bernoulli"` head/tail choice.
            (default: :obj:`"uniform"`)
        filter_negatives (bool): Never draw a known training triple as a negative.
            (default: :obj:`False`)
        twins (bool): Twins negative sampling (VBKGC) for models with separate structural
            and multi-modal embeddings. (default: :obj:`False`)
        eval_every (int): Validate every this many epochs (and after the last).
            (default: :obj:`10`)
        eval_batch_size (int, optional): Queries per evaluation batch (:obj:`None`: sized
            to the number of entities). (default: :obj:`None`)
        val_split (str): :obj:`"val_clean"` (validation minus triples leaked from train,
            see :func:`~torch_mmkg.data.clean_val_mask`) or :obj:`"val"`.
            (default: :obj:`"val_clean"`)
        metric (str): The validation metric maximised for model selection.
            (default: :obj:`"mrr"`)
        patience (int, optional): Stop after this many validations without improvement.
            (default: :obj:`None`)
        max_minutes (float, optional): Stop training after this wall-clock budget (the
            selected model is still tested). (default: :obj:`None`)
        checkpoint_every (int): Save a resumable checkpoint every this many epochs
            (:obj:`0`: never). (default: :obj:`0`)
        grad_clip (float, optional): Clip the gradient norm. (default: :obj:`None`)
        seed (int): Seeds the model initialisation, shuffling and sampling.
            (default: :obj:`0`)
        device (str): :obj:`"auto"` (CUDA when available), :obj:`"cpu"`, :obj:`"cuda:1"`...
            (default: :obj:`"auto"`)
        progress (bool): tqdm progress bars. (default: :obj:`True`)
        test (bool): Evaluate the selected model on the test split at the end.
            (default: :obj:`True`)
        comat (dict, optional): Train with :class:`~torch_mmkg.training.CoMAT` adversarial
            modality augmentation, with these keyword arguments (:obj:`{}` for its
            defaults; the generator's learning rate defaults to :obj:`lr`); :obj:`None`
            trains without it. (default: :obj:`None`)
    """
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = 'adam'
    weight_decay: float = 0.0
    regime: Optional[str] = None
    num_negatives: int = 128
    sampling: str = 'uniform'
    filter_negatives: bool = False
    twins: bool = False
    eval_every: int = 10
    eval_batch_size: Optional[int] = None
    val_split: str = 'val_clean'
    metric: str = 'mrr'
    patience: Optional[int] = None
    max_minutes: Optional[float] = None
    checkpoint_every: int = 0
    grad_clip: Optional[float] = None
    seed: int = 0
    device: str = 'auto'
    progress: bool = True
    test: bool = True
    comat: Optional[Dict[str, Any]] = None

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, 'epochs must be >= 1'),
            (self.batch_size >= 1, 'batch_size must be >= 1'),
            (self.lr > 0, 'lr must be > 0'),
            (self.optimizer in ('adam', 'adamw', 'adagrad', 'sgd'),
             "optimizer must be 'adam', 'adamw', 'adagrad' or 'sgd'"),
            (self.regime in (None, 'negative_sampling', '1-n'),
             "regime must be None, 'negative_sampling' or '1-n'"),
            (self.num_negatives >= 1, 'num_negatives must be >= 1'),
            (self.sampling in ('uniform', 'bernoulli'), "sampling must be 'uniform' or "
             "'bernoulli'"),
            (self.eval_every >= 1, 'eval_every must be >= 1'),
            (self.val_split in ('val', 'val_clean'), "val_split must be 'val' or 'val_clean'"),
            (self.checkpoint_every >= 0, 'checkpoint_every must be >= 0'),
            (self.comat is None or isinstance(self.comat, dict),
             'comat must be None or a mapping of CoMAT options'),
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

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
