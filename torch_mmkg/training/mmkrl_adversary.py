from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.validation import choice, real

from .adversarial import ModalityAdversary

__all__ = ['MMKRLAdversary']

#: How the synthetic triples of a batch meet the real ones in the loss (see
#: :class:`MMKRLAdversary`).
SYNTHETIC_PAIRINGS = ('batch', 'aligned')


class MMKRLAdversary(ModalityAdversary):
    r"""The adversarial training of :class:`~torch_mmkg.nn.MMKRL` from the `"MMKRL: A robust
    embedding approach for multi-modal knowledge graph representation learning"
    <https://doi.org/10.1007/s10489-021-02693-9>`_ paper (Applied Intelligence 2022), as
    the re-implementation behind the comparison tables trains it (zjukg's
    :obj:`MMKRLTrainer`; the :math:`\dagger` rows of NATIVE's Table 2): a training add-on
    (:obj:`TrainConfig(mmkrl_adversary={...})`).

    A generator maps noise and an entity's raw structural embedding to a perturbation of
    its reconstruction-space views,

    .. math::
        \mathbf{g}_e = G(\mathbf{z} \,\|\, \mathbf{e}) = \mathbf{W}_2\,
        \mathrm{LeakyReLU}(\mathbf{W}_1 [\mathbf{z} \,\|\, \mathbf{e}] + \mathbf{b}_1) +
        \mathbf{b}_2, \qquad \mathbf{z} \sim \mathcal{N}(0, I),

    added to the projected and multi-modal views of both the head and the tail of each
    positive triple (the raw structural views unchanged) to make one synthetic triple per
    positive, scored by MMKRL's energy (:meth:`~torch_mmkg.nn.MMKRL.offset_score_stacks`),

    .. math::
        s^*(h, r, t) = -\tfrac14 \big[d(\mathbf{h}' + \mathbf{g}_h, \mathbf{r}',
        \mathbf{t}' + \mathbf{g}_t) + d(\mathbf{m}_h + \mathbf{g}_h, \mathbf{r}',
        \mathbf{m}_t + \mathbf{g}_t) + d(\mathbf{m}_h + \mathbf{g}_h, \mathbf{r}',
        \mathbf{t}) + d(\mathbf{h}, \mathbf{r}', \mathbf{m}_t + \mathbf{g}_t)\big].

    With :math:`\mathcal{L}` the model's own negative-sampling loss (MMKRL's margin ranking
    loss by default), per batch the model (the discriminator) takes one step on

    .. math::
        \mathcal{L}_D = \mathcal{L}_{kge} + \lambda_{ka} \mathcal{L}_{ka} +
        \mu\, \mathcal{L}(s^+, s^*),

    the synthetic triples as negatives of the real ones (:math:`s^+` the positives'
    scores), then the generator takes one step on :math:`\mathcal{L}_G = \mathcal{L}(s^*,
    s^+)`, the synthetic triples as positives and the real ones (scored by the stepped
    model) as negatives, on fresh noise. The model never moves in the generator step and
    the generator never in the critic step.

    The paper's own scheme could not be checked (its abstract says only that an adversarial
    training strategy makes MMKRL robust, and the authors' code was not located): this is the
    re-implementation's, whose tables the :math:`\dagger` numbers come from. Where its code
    decides:

    * :math:`\mu = 0.07` (:obj:`adversarial_weight`): hard-coded in the trainer, whose
      :obj:`mu` argument is required but never used.
    * :obj:`synthetic_pairing="batch"`: the trainer passes the positives' scores as a
      :math:`[B, 1]` column and the synthetic scores as a :math:`[B]` row, so the loss
      broadcasts to every (real, synthetic) pair of the batch, :math:`B^2` pairs (in both
      steps); :obj:`"aligned"` pairs each positive with its own synthetic triple only.
    * :obj:`critic_through_generator=True`: the critic step feeds the structural
      embeddings to the generator without detaching them, so :math:`\mu\,\mathcal{L}` also
      reaches :math:`\mathbf{e}` through the generator's input.
    * The generator: the trainer takes any module mapping :math:`\mathbf{e}` to a
      :math:`d`-vector and no script instantiates it; this is the repository's only
      generator with that call (:obj:`BaseGenerator`: noise ahead of the embedding, hidden
      width 512, LeakyReLU with PyTorch's slope 0.01), with :math:`\mathbf{z} \in
      \mathbb{R}^{64}` (the width of their other adversarial scripts). Its learning rate
      (:obj:`lrg`, required, no default) is the trainer's unless given.

    Args:
        model (torch.nn.Module): The model to train (:class:`~torch_mmkg.nn.MMKRL`, or any
            model with ``modality_stack``, ``score_stacks`` and ``offset_score_stacks``
            whose loss is :obj:`loss_fn(pos [B], neg [B, K])`).
        noise_channels (int, optional): Width of :math:`\mathbf{z}`. (default: :obj:`64`)
        hidden_channels (int, optional): The generator's hidden width.
            (default: :obj:`512`)
        adversarial_weight (float, optional): :math:`\mu \geq 0`. (default: :obj:`0.07`)
        synthetic_pairing (str, optional): :obj:`"batch"` or :obj:`"aligned"` (see above).
            (default: :obj:`"batch"`)
        generator_lr (float, optional): The generator's learning rate (:obj:`None`: the
            trainer's). (default: :obj:`None`)
        negative_slope (float, optional): Of the generator's LeakyReLU.
            (default: :obj:`0.01`)
        critic_through_generator (bool, optional): Let the critic's loss reach the
            structural embeddings through the generator's input. (default: :obj:`True`)

    Shapes:
        - :meth:`generate`: stack :math:`[*, S, d]`, noise :math:`[*, Z]` :math:`\to`
          offset :math:`[*, d]`
        - :meth:`discriminator_loss`, :meth:`generator_loss`: scores :math:`[B]`
          :math:`\to` a scalar
    """
    def __init__(self, model: torch.nn.Module, noise_channels: int = 64,
                 hidden_channels: int = 512, adversarial_weight: float = 0.07,
                 synthetic_pairing: str = 'batch', generator_lr: Optional[float] = None,
                 negative_slope: float = 0.01, critic_through_generator: bool = True):
        name = type(self).__name__
        missing = [a for a in ('offset_score_stacks', 'loss_fn') if not hasattr(model, a)]
        if missing:
            raise TypeError(f"{name} trains MMKRL (a model that scores offset views and has a "
                            f"negative-sampling loss_fn); {model.__class__.__name__} lacks "
                            f"{missing}")
        super().__init__(model, noise_channels)
        self.adversarial_weight = real(self, 'adversarial_weight', adversarial_weight, 0.0)
        self.synthetic_pairing = choice(self, 'synthetic_pairing', synthetic_pairing,
                                        SYNTHETIC_PAIRINGS)
        hidden = self._generator_options(generator_lr, negative_slope, critic_through_generator,
                                         hidden_channels)
        self.generator = self._mlp_generator(hidden)
        self.to(next(model.parameters()).device)

    # Pieces ###################################################################################

    def generate(self, stack: Tensor, noise: Optional[Tensor] = None,
                 detach_input: bool = True) -> Tensor:
        r"""The offsets :math:`\mathbf{g}_e = G(\mathbf{z} \| \mathbf{e})` :math:`[*, d]` of
        the entities of a stack (its structural slot; :obj:`noise` :math:`[*, Z]`, drawn
        unless given; :math:`\mathbf{e}` detached from the critic if
        :obj:`detach_input`)."""
        e = stack[..., 0, :]
        if detach_input:
            e = e.detach()
        if noise is None:
            noise = self.noise(e, self.noise_channels)
        return self.generator(torch.cat([noise, e], dim=-1))

    def synthetic_score(self, real: Sequence[Tensor], rel_type: Tensor, head_offset: Tensor,
                        tail_offset: Tensor) -> Tensor:
        r""":math:`s^*` of the triples of the real :obj:`(hs, hm, ts, tm)` with the
        offsets."""
        hs, hm, ts, tm = real
        return self.wrapped.offset_score_stacks(hs, hm, rel_type, ts, tm, head_offset,
                                                tail_offset)

    def _pair(self, pos: Tensor, neg: Tensor) -> Tensor:
        loss_fn = self.wrapped.loss_fn
        pos, neg = pos.reshape(-1), neg.reshape(-1)
        if self.synthetic_pairing == 'batch':  # every pair of the batch
            return loss_fn(pos, neg.unsqueeze(0).expand(pos.numel(), -1))
        return loss_fn(pos, neg.unsqueeze(-1))

    def discriminator_loss(self, real_score: Tensor, fake_score: Tensor) -> Tensor:
        r""":math:`\mathcal{L}(s^+, s^*)`: the model's loss with the synthetic scores as the
        negatives (of every positive of the batch, or of its own)."""
        return self._pair(real_score, fake_score)

    def generator_loss(self, fake_score: Tensor, real_score: Tensor) -> Tensor:
        r""":math:`\mathcal{L}(s^*, s^+)`: the model's loss with the synthetic scores as the
        positives and the real ones as the negatives."""
        return self._pair(fake_score, real_score)

    # The step (ModalityAdversary.train_step) ################################################

    def critic_terms(self, real: Sequence[Tensor], rel_type: Tensor
                     ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        r""":math:`\mu\, \mathcal{L}(s^+, s^*)` (:obj:`None` for :math:`\mu = 0`: the term
        is then computed without gradient, for the log) and the term :obj:`"adv"`,
        :math:`\mathcal{L}(s^+, s^*)`."""
        hs, hm, ts, tm = real
        through = self.critic_through_generator and self.adversarial_weight > 0
        with torch.enable_grad() if self.adversarial_weight > 0 else torch.no_grad():
            # heads' noise first, then the tails', as the authors' trainer draws them; the
            # critic's backward is taken for its own parameters only
            gh = self.generate(hs, detach_input=not through)
            gt = self.generate(ts, detach_input=not through)
            adv = self.discriminator_loss(self.critic(hs, hm, rel_type, ts, tm),
                                          self.synthetic_score(real, rel_type, gh, gt))
        return self._weighted(adv)

    def generator_step(self, real: Sequence[Tensor], rel_type: Tensor,
                       optimizer: torch.optim.Optimizer,
                       grad_clip: Optional[float] = None) -> Tensor:
        r""":math:`\mathcal{L}_G` after one step of the generator (on fresh noise; the real
        scores :math:`s^+` recomputed with the stepped model)."""
        hs, hm, ts, tm = real
        with torch.no_grad():
            real_score = self.critic(hs, hm, rel_type, ts, tm)
        gh, gt = self.generate(hs), self.generate(ts)
        loss_g = self.generator_loss(self.synthetic_score(real, rel_type, gh, gt), real_score)
        self._step_generator(loss_g, optimizer, grad_clip)
        return loss_g

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, adversarial_weight={self.adversarial_weight}, '
                f'synthetic_pairing={self.synthetic_pairing!r}, '
                f'critic_through_generator={self.critic_through_generator}')
