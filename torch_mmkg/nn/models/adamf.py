from typing import Mapping, Optional

from torch import Tensor

from .native import NATIVE

__all__ = ['AdaMF']


class AdaMF(NATIVE):
    r"""The AdaMF model from the `"Unleashing the Power of Imbalanced Modality Information
    for Multi-modal Knowledge Graph Completion" <https://arxiv.org/abs/2402.15444>`_ paper
    (adaptive multi-modal fusion; its modality-adversarial training, MAT, is the training
    add-on :class:`~torch_mmkg.training.MAT`: :obj:`TrainConfig(mat={...})`).

    Each entity has a learnable structural embedding :math:`\mathbf{e}_s \in \mathbb{C}^d`
    and, per modality :math:`m` (image and text in the paper, any number here), a feature
    table :math:`\mathbf{x}_m` fine-tuned with the model and mapped to the entity space by
    one linear layer, :math:`\mathbf{e}_m = \mathbf{W}_m \mathbf{x}_m + \mathbf{b}_m`. The
    joint embedding weighs the stack :math:`S_e = [\mathbf{e}_s, \mathbf{e}_1, \ldots,
    \mathbf{e}_M]` adaptively, per entity,

    .. math::
        \alpha_{e,m} = \frac{\exp\big(\mathbf{w}^{\top}\tanh(S_e[m])\big)}{\sum_n
        \exp\big(\mathbf{w}^{\top}\tanh(S_e[n])\big)}, \qquad
        \hat{\mathbf{e}} = \sum_m \alpha_{e,m}\, S_e[m],

    is scored by RotatE, :math:`s(h, r, t) = \gamma - \sum_{k=1}^{d} |\hat{h}_k
    e^{i\theta_{r,k}} - \hat{t}_k|`, and trained with the self-adversarial sigmoid loss

    .. math::
        \mathcal{L} = -\frac{1}{2}\Big(\log\sigma(s^+) + \sum_{i=1}^{K} p_i
        \log\sigma(-s^-_i)\Big), \qquad p_i = \mathrm{softmax}_i(\alpha\, s^-_i),

    without a regulariser.

    It is :class:`~torch_mmkg.nn.NATIVE`'s pipeline without the relation-wise temperature,
    with single-layer projections and trainable feature tables. Where the paper is silent
    the defaults follow the authors' code (``AdvMixRotatE``): :math:`\mathbf{e}_s \sim
    U(\pm(\gamma + \epsilon)/(2d))`, the relation phases :math:`\boldsymbol{\theta}_r =
    \pi\mathbf{r} / \rho_r` with :math:`\mathbf{r} \sim U(\pm\rho_r)`, :math:`\rho_r =
    (\gamma + \epsilon) / d`, and :math:`\mathbf{w}` as the default :obj:`nn.Linear(2d, 1,
    bias=False)` (:obj:`init="authors"`).

    Missing modalities (mask False) are left out of the softmax, so an entity is never
    scored through a feature it does not have; :obj:`mask_missing=False` restores the
    paper's behaviour (every stored row enters the fusion).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d` (entities have real
            width :math:`2d`; the authors use 250 on DB15K and 200 on MKG-W/Y).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma`, finite (the authors' scripts: 12 on DB15K
            and MKG-W, 4 on MKG-Y). (default: :obj:`12.0`)
        epsilon (float, optional): :math:`\epsilon` of the initialisation ranges, with
            :math:`\gamma + \epsilon > 0`. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\alpha \geq 0`.
            (default: :obj:`2.0`)
        mask_missing (bool, optional): (default: :obj:`True`)
        trainable_features (bool, optional): Fine-tune the feature tables (the authors'
            code); else frozen buffers. (default: :obj:`True`)
        projection_layers (int, optional): :obj:`1` for the single linear
            :math:`\mathbf{W}_m` (the authors'), :obj:`2` for NATIVE's MLP.
            (default: :obj:`1`)
        fusion (str or Fusion, optional): :obj:`"adaptive"` (AdaMF) or any fusion
            :class:`~torch_mmkg.nn.NATIVE` takes (e.g. :obj:`"mean"` for the ablation
            without adaptive weights). (default: :obj:`"adaptive"`)
        regularization_weight (float, optional): An :math:`L_2` weight :math:`\geq 0` as in
            NATIVE (the authors' AdaMF has none). (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        init (str, optional): :obj:`"authors"` (above) or :obj:`"rotate"` (see
            :class:`~torch_mmkg.nn.NATIVE`). (default: :obj:`"authors"`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, 2d]` and
          :math:`[*, M + 1]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 12.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 2.0, mask_missing: bool = True,
                 trainable_features: bool = True, projection_layers: int = 1,
                 fusion='adaptive', regularization_weight: float = 0.0, loss=None,
                 init: str = 'authors'):
        super().__init__(num_nodes, num_relations, hidden_channels, features, masks,
                         margin=margin, epsilon=epsilon,
                         adversarial_temperature=adversarial_temperature,
                         regularization_weight=regularization_weight, mask_missing=mask_missing,
                         relation_temperature=False, fusion=fusion,
                         projection_layers=projection_layers, loss=loss, init=init,
                         trainable_features=trainable_features)
