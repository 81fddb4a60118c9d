from contextlib import nullcontext
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .adversarial import ModalityAdversary

GAN_LOSSES = ('wasserstein', 'vanilla')
DISCRIMINATORS = ('score', 'mlp', 'triple_mlp')
PENALTY_MODES = ('authors', 'through_fusion')
REDUCTIONS = ('sum', 'mean')


class CoMAT(ModalityAdversary):
    r"""Collaborative modality adversarial training from the `"NATIVE: Multi-modal Knowledge
    Graph Completion in the Wild" <https://arxiv.org/abs/2406.17605>`_ paper, as a training
    regime that wraps any model exposing its per-modality representations.

    A generator (Eq. 8) maps noise :math:`\mathbf{z}` and an entity's concatenated real
    representations to synthetic modality representations,

    .. math::
        [\mathbf{e}'_1, \ldots, \mathbf{e}'_M] = \mathbf{W}_2\,
        \mathrm{LeakyReLU}(\mathbf{W}_1 [\mathbf{z} \,\|\, \mathbf{e}_S \,\|\,
        \mathbf{e}_1 \,\|\, \cdots \,\|\, \mathbf{e}_M] + \mathbf{b}_1) + \mathbf{b}_2,

    which, with the entity's real structural embedding, form a synthetic entity :math:`e^*`
    (all its modalities present). The model's own score function :math:`\mathcal{F}` is the
    critic of the synthetic set :math:`\mathcal{S}(h, r, t) = \{(h^*, r, t), (h, r, t^*),
    (h^*, r, t^*)\}`:

    .. math::
        \mathcal{L}_{adv} = \sum_{(h^*, r, t^*) \in \mathcal{S}} \Big(
        \overline{\mathcal{F}(h^*, r, t^*)} - \overline{\mathcal{F}(h, r, t)} \Big)

    (bars are batch means), as the authors' code computes it; Eq. 9 of the paper takes the
    mean over :math:`\mathcal{S}` instead (:obj:`adversarial_reduction="mean"`), i.e. the
    code's :math:`\lambda_1` is three times the paper's. Per batch, one critic step then one
    generator step (Eq. 11), each with its own optimiser:

    .. math::
        \mathcal{L}_{\mathcal{D}} = \mathcal{L}_{kgc} + \lambda_1 \mathcal{L}_{adv} +
        \lambda_1 \beta\, \mathcal{L}_{gp}, \qquad
        \mathcal{L}_{\mathcal{G}} = -\frac{1}{|\mathcal{S}|} \sum_{\mathcal{S}}
        \overline{\mathcal{F}(h^*, r, t^*)},

    with the gradient penalty of WGAN-GP (Eq. 12) on random interpolates
    :math:`\bar{\mathbf{x}} = \alpha \mathbf{x} + (1 - \alpha) \mathbf{x}^*`,
    :math:`\alpha \sim U(0, 1)` per triple, of a real triple and its fully synthetic
    :math:`(h^*, r, t^*)`,

    .. math::
        \mathcal{L}_{gp} = \overline{\big(\|\nabla_{\bar{\mathbf{x}}_h}
        \mathcal{F}(\bar{\mathbf{x}}_h, r, \bar{\mathbf{x}}_t)\|_2 - 1\big)^2}.

    As in the authors' code (and WGAN-GP), the penalty is a term of the critic's loss, not of
    the generator's as Eq. 11 prints it, and it is taken with respect to the head
    interpolate. Where the paper is silent the defaults follow the authors' code:

    * :obj:`penalty_mode="authors"`: the interpolates are of the *detached* joint (fused)
      embeddings :math:`(\hat{\mathbf{h}}, \mathbf{r}, \hat{\mathbf{t}})`, scored by the
      model's interaction alone. For RotatE this score has no parameters and
      :math:`\|\nabla_{\mathbf{h}} \mathcal{F}\|_2 = \sqrt{d}` wherever no coordinate of
      :math:`\mathbf{h} \circ \mathbf{r} - \mathbf{t}` vanishes, so the penalty is the
      constant :math:`(\sqrt{d} - 1)^2` and trains nothing (consistent with the paper's
      Table 4, "w/o :math:`\mathcal{L}_{gp}`" 37.14 vs 37.16 MRR).
      :obj:`"through_fusion"` (torch_mmkg's earlier penalty) interpolates the stacks of
      representations instead (a missing modality of the real entity is taken from the
      synthetic one) and fuses them, so the penalty trains the relations and the fusion.
    * :obj:`critic_through_generator=True`: the critic step generates from the real
      representations without detaching them, so the critic's loss reaches the projections
      and structural embeddings also through the generator's input (the generator itself
      never moves in the critic step); :obj:`False` detaches the generator's input and
      output (torch_mmkg's earlier step).
    * :obj:`negative_slope=0.01`: the generator's LeakyReLU (PyTorch's default, which the
      authors use; torch_mmkg used :obj:`0.2` before).

    The critic never moves in the generator step (gradients are taken for the generator
    only). The step is :class:`~torch_mmkg.training.adversarial.ModalityAdversary`'s, which
    :class:`~torch_mmkg.training.MAT` shares.

    Missing modalities are zeros in the generator's input, and the penalty of
    :obj:`"through_fusion"` takes them from the synthetic entity, unless the model was built
    with :obj:`mask_missing=False`: then no row is treated as missing anywhere, as in the
    paper.

    The wrapped model must provide ``modality_stack(index) -> (stack [*, S, D], mask [*, S])``
    (slot 0 the structural embedding) and ``score_stacks(head_stack, head_mask, rel_type,
    tail_stack, tail_mask) -> [*]`` — e.g. :class:`~torch_mmkg.nn.NATIVE` and
    :class:`~torch_mmkg.nn.TBKGC` — and be trained by negative sampling
    (:meth:`~torch_mmkg.nn.kge.KGEModel.loss`); the authors' penalty and MLP discriminator
    also use its ``fuse``, ``relation`` and ``interaction``.

    Args:
        model (torch.nn.Module): The model to train.
        noise_channels (int, optional): Width of :math:`\mathbf{z}`. (default: :obj:`64`)
        hidden_channels (int, optional): The generator's hidden width. (default: :obj:`512`)
        adversarial_weight (float, optional): :math:`\lambda_1` (the authors' :math:`\mu`).
            (default: :obj:`1e-4`)
        gradient_penalty (float, optional): :math:`\beta`; :obj:`0` disables the penalty
            (ablation "w/o :math:`\mathcal{L}_{gp}`"). (default: :obj:`0.1`)
        gan_loss (str, optional): :obj:`"wasserstein"` or :obj:`"vanilla"` (the
            log-likelihood GAN of the ablation: the critic minimises
            :math:`-\log\sigma(s) - \log(1 - \sigma(s^*))`, the generator
            :math:`-\log\sigma(s^*)`). (default: :obj:`"wasserstein"`)
        discriminator (str, optional): :obj:`"score"` (the model's score function),
            :obj:`"mlp"` (ablation "w/ MLP as :math:`\mathcal{D}`" as the authors ran it: a
            :obj:`Linear(D, D)`-ReLU-:obj:`Linear(D, 1)` critic of single entities, fed the
            mean of an entity's slots, real against synthetic, for heads and tails,
            :math:`\mathcal{L}_{adv} = \sum_{e \in \{h, t\}} (\overline{D(e^*)} -
            \overline{D(e)})`; its penalty, as in their code, is on interpolates between the
            detached real joint embedding and the synthetic entity's detached critic score,
            broadcast; the generator is never stepped) or :obj:`"triple_mlp"`
            (torch_mmkg's earlier variant: a two-layer MLP over the head and tail stacks and
            a relation embedding, trained against a stepped generator).
            (default: :obj:`"score"`)
        generator_lr (float, optional): The generator's learning rate (:obj:`None`: the
            trainer's). (default: :obj:`None`)
        penalty_mode (str, optional): :obj:`"authors"` or :obj:`"through_fusion"` (see
            above), for :obj:`discriminator="score"`; :obj:`"triple_mlp"` always takes the
            penalty on the stacks, :obj:`"mlp"` as its authors did. (default:
            :obj:`"authors"`)
        negative_slope (float, optional): Of the generator's LeakyReLU.
            (default: :obj:`0.01`)
        critic_through_generator (bool, optional): Let the critic's loss reach the model
            through the generator's input (see above). (default: :obj:`True`)
        adversarial_reduction (str, optional): :obj:`"sum"` over the synthetic set (the
            authors' code) or :obj:`"mean"` (Eq. 9's :math:`1/|\mathcal{S}|`).
            (default: :obj:`"sum"`)
        mask_missing (bool, optional): Treat the rows the model marks missing as missing
            (:obj:`None`: the model's :obj:`mask_missing`, :obj:`True` if it has none).
            (default: :obj:`None`)
    """
    def __init__(self, model: torch.nn.Module, noise_channels: int = 64,
                 hidden_channels: int = 512, adversarial_weight: float = 1e-4,
                 gradient_penalty: float = 0.1, gan_loss: str = 'wasserstein',
                 discriminator: str = 'score', generator_lr: Optional[float] = None,
                 penalty_mode: str = 'authors', negative_slope: float = 0.01,
                 critic_through_generator: bool = True, adversarial_reduction: str = 'sum',
                 mask_missing: Optional[bool] = None):
        super().__init__(model, noise_channels, mask_missing)
        for name, value, choices in (('gan_loss', gan_loss, GAN_LOSSES),
                                     ('discriminator', discriminator, DISCRIMINATORS),
                                     ('penalty_mode', penalty_mode, PENALTY_MODES),
                                     ('adversarial_reduction', adversarial_reduction,
                                      REDUCTIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if adversarial_weight < 0 or gradient_penalty < 0:
            raise ValueError("adversarial_weight and gradient_penalty must be >= 0")
        if not negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        if discriminator == 'mlp' or (discriminator == 'score' and penalty_mode == 'authors'):
            lacks = [a for a in ('fuse', 'relation', 'interaction') if not hasattr(model, a)]
            if lacks:
                raise TypeError(f"CoMAT's discriminator={discriminator!r}, "
                                f"penalty_mode={penalty_mode!r} reads the model's joint "
                                f"embeddings; {model.__class__.__name__} lacks {lacks}")
        device = next(model.parameters()).device
        if discriminator == 'mlp':
            with torch.no_grad():
                index = self._probe_index()
                joint = model.fuse(*model.modality_stack(index), index)
            if joint.size(-1) != self.channels:
                raise ValueError(f"discriminator='mlp' scores joint embeddings (or views) of "
                                 f"the width of a slot ({self.channels}); "
                                 f"{model.__class__.__name__}'s are {tuple(joint.shape[1:])}")
        self.adversarial_weight = float(adversarial_weight)
        self.gradient_penalty = float(gradient_penalty)
        self.gan_loss = gan_loss
        self.discriminator = discriminator
        self.generator_lr = generator_lr
        self.penalty_mode = penalty_mode
        self.negative_slope = float(negative_slope)
        self.critic_through_generator = bool(critic_through_generator)
        self.adversarial_reduction = adversarial_reduction
        S, D = self.num_slots, self.channels
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(self.noise_channels + S * D, hidden_channels),
            torch.nn.LeakyReLU(self.negative_slope),
            torch.nn.Linear(hidden_channels, (S - 1) * D),
        )
        self.mlp: Optional[torch.nn.Module] = None
        if discriminator == 'mlp':  # the authors' adv_scores
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(D, D),
                torch.nn.ReLU(),
                torch.nn.Linear(D, 1),
            )
        elif discriminator == 'triple_mlp':
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(2 * S * D + D, hidden_channels),
                torch.nn.LeakyReLU(0.2),
                torch.nn.Linear(hidden_channels, 1),
            )
            self.mlp_rel = torch.nn.Embedding(model.num_relations, D)
        self.to(device)

    def critic_parameters(self) -> Iterator[torch.nn.Parameter]:
        r"""The discriminator's parameters beyond the model's own (the MLP's, if any)."""
        if self.mlp is None:
            return iter(())
        extra = list(self.mlp_rel.parameters()) if self.discriminator == 'triple_mlp' else []
        return iter(list(self.mlp.parameters()) + extra)

    # Pieces ###################################################################################

    def generate(self, stack: Tensor, mask: Tensor, noise: Optional[Tensor] = None,
                 detach: bool = False, detach_input: bool = True) -> Tuple[Tensor, Tensor]:
        r"""A synthetic entity per row: the real structural slot (as given, it belongs to
        the critic) and generated modality slots (all present; computed without gradient to
        the generator if :obj:`detach`). Missing modalities are zeros in the generator's
        input (unless :obj:`mask_missing=False`), which is detached from the critic if
        :obj:`detach_input`.

        Shapes:
            - **input:** stack :math:`[B, S, D]`, mask :math:`[B, S]`, noise :math:`[B, Z]`
            - **output:** stack :math:`[B, S, D]`, mask :math:`[B, S]` (all True)
        """
        real = stack
        if self.mask_missing:
            real = torch.where(mask[..., None], stack, stack.new_zeros(()))
        real = real.flatten(-2)
        if detach_input:
            real = real.detach()
        if noise is None:
            noise = self.noise(real, self.noise_channels)
        with torch.no_grad() if detach else nullcontext():
            fake = self.generator(torch.cat([noise, real], dim=-1))
        fake = fake.view(*stack.shape[:-2], self.num_slots - 1, self.channels)
        return (torch.cat([stack[..., :1, :], fake], dim=-2),
                torch.ones_like(mask))

    def critic(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
               tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""The discriminator's score of triples given as stacks (:obj:`"score"` and
        :obj:`"triple_mlp"`)."""
        if self.discriminator == 'mlp':
            raise RuntimeError("discriminator='mlp' scores entities (entity_critic), not "
                               "triples")
        if self.mlp is None:
            return super().critic(head_stack, head_mask, rel_type, tail_stack, tail_mask)
        zero = head_stack.new_zeros(())
        h = torch.where(self.present(head_mask)[..., None], head_stack, zero)
        t = torch.where(self.present(tail_mask)[..., None], tail_stack, zero)
        x = torch.cat([h.flatten(-2), t.flatten(-2), self.mlp_rel(rel_type)], dim=-1)
        return self.mlp(x).squeeze(-1)

    def entity_critic(self, stack: Tensor, mask: Tensor) -> Tensor:
        r"""The critic of :obj:`discriminator="mlp"`: the MLP of the mean of an entity's
        (available) slots, :math:`[*, S, D] \to [*]`."""
        present = self.present(mask)
        x = torch.where(present[..., None], stack, stack.new_zeros(())).sum(dim=-2)
        x = x / present.sum(dim=-1, keepdim=True).clamp(min=1).to(stack.dtype)
        return self.mlp(x).squeeze(-1)

    def _reduce(self, terms: List[Tensor]) -> Tensor:
        total = sum(terms)
        return total / len(terms) if self.adversarial_reduction == 'mean' else total

    def adversarial_loss(self, real_score: Union[Tensor, Sequence[Tensor]],
                         fake_scores: Sequence[Tensor]) -> Tensor:
        r"""The critic's :math:`\mathcal{L}_{adv}` (Eq. 9, or its log-likelihood variant),
        summed (or averaged, :obj:`adversarial_reduction="mean"`) over the synthetic scores;
        :obj:`real_score` is the real triples' scores, or one real score per synthetic
        one."""
        reals = ([real_score] * len(fake_scores) if isinstance(real_score, Tensor) else
                 list(real_score))
        if self.gan_loss == 'wasserstein':
            return self._reduce([f.mean() - s.mean() for s, f in zip(reals, fake_scores)])
        return self._reduce([F.softplus(-s).mean() + F.softplus(f).mean()
                             for s, f in zip(reals, fake_scores)])

    def generator_loss(self, fake_scores: Sequence[Tensor]) -> Tensor:
        r""":math:`\mathcal{L}_{\mathcal{G}}`: the mean over the synthetic set of
        :math:`-\overline{s^*}` (or of :math:`-\log\sigma(s^*)`)."""
        if self.gan_loss == 'wasserstein':
            return -sum(f.mean() for f in fake_scores) / len(fake_scores)
        return sum(F.softplus(-f).mean() for f in fake_scores) / len(fake_scores)

    @staticmethod
    def _gradient_norm_penalty(score: Tensor, x: Tensor) -> Tensor:
        r"""The mean over rows of :math:`(\|\partial s / \partial \mathbf{x}\|_2 - 1)^2`."""
        grad, = torch.autograd.grad(score.sum(), x, create_graph=True)
        # the norm's derivative is undefined at 0; a tiny floor keeps the double backward finite
        norm = torch.sqrt(grad.flatten(1).square().sum(dim=-1) + 1e-12)
        return ((norm - 1)**2).mean()

    def penalty(self, real: Sequence[Tensor], fake: Sequence[Tensor], rel_type: Tensor,
                alpha: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathcal{L}_{gp}` on interpolates of the real and synthetic triples (with
        :math:`\alpha` of shape :obj:`[B]` drawn uniformly unless given), as set by
        :obj:`penalty_mode` and :obj:`discriminator` (the MLP critic's is the sum of a head
        and a tail term, with one :math:`\alpha` each unless given)."""
        hs, hm, ts, tm = real
        fhs, fhm, fts, ftm = fake
        model = self.wrapped

        def draw():
            if alpha is not None:
                return alpha
            return torch.rand(hs.size(0), device=hs.device, dtype=hs.dtype)

        if self.discriminator == 'mlp':
            total = hs.new_zeros(())
            for stack, mask, fstack, fmask in ((hs, hm, fhs, fhm), (ts, tm, fts, ftm)):
                with torch.no_grad():
                    joint = model.fuse(stack, self.present(mask), rel_type)
                    # [B, D], or [B, V, D] for the views of a multi-view interaction
                    shape = (-1, ) + (1, ) * (joint.dim() - 1)
                    fake_score = self.entity_critic(fstack, fmask).view(shape)
                a = draw().view(shape)
                x = (a * joint + (1 - a) * fake_score).requires_grad_(True)
                total = total + self._gradient_norm_penalty(self.mlp(x), x)
            return total
        a = draw()
        if self.discriminator == 'score' and self.penalty_mode == 'authors':
            with torch.no_grad():
                r = model.relation(rel_type)
                joints = [model.fuse(s, self.present(m), rel_type)
                          for s, m in ((hs, hm), (ts, tm), (fhs, fhm), (fts, ftm))]
            a = a.view(-1, *[1] * (joints[0].dim() - 1))
            x_h = (a * joints[0] + (1 - a) * joints[2]).requires_grad_(True)
            x_t = a * joints[1] + (1 - a) * joints[3]
            return self._gradient_norm_penalty(model.interaction(x_h, r, x_t), x_h)
        a = a.view(-1, 1, 1)
        # a missing real modality is taken from the synthetic entity
        hs = torch.where(self.present(hm)[..., None], hs, fhs).detach()
        ts = torch.where(self.present(tm)[..., None], ts, fts).detach()
        x_h = (a * hs + (1 - a) * fhs.detach()).requires_grad_(True)
        x_t = a * ts + (1 - a) * fts.detach()
        return self._gradient_norm_penalty(self.critic(x_h, ftm, rel_type, x_t, ftm), x_h)

    # The step (ModalityAdversary.train_step) ################################################

    def critic_terms(self, real: Sequence[Tensor], rel_type: Tensor
                     ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r""":math:`\lambda_1 (\mathcal{L}_{adv} + \beta\, \mathcal{L}_{gp})` and the terms
        :obj:`"adv"`, :obj:`"gp"`."""
        hs, hm, ts, tm = real
        detach = not self.critic_through_generator
        fake = (*self.generate(hs, hm, detach=detach, detach_input=detach),
                *self.generate(ts, tm, detach=detach, detach_input=detach))
        if self.discriminator == 'mlp':
            adv = self.adversarial_loss(
                [self.entity_critic(hs, hm), self.entity_critic(ts, tm)],
                [self.entity_critic(fake[0], fake[1]), self.entity_critic(fake[2], fake[3])])
        else:
            real_score = self.critic(hs, hm, rel_type, ts, tm)
            adv = self.adversarial_loss(real_score, self.synthetic_scores(real, fake, rel_type))
        gp = (self.penalty(real, fake, rel_type) if self.gradient_penalty > 0 else
              adv.new_zeros(()))
        return (self.adversarial_weight * (adv + self.gradient_penalty * gp),
                {'adv': adv, 'gp': gp})

    def generator_step(self, real: Sequence[Tensor], rel_type: Tensor,
                       optimizer: torch.optim.Optimizer,
                       grad_clip: Optional[float] = None) -> Tensor:
        r""":math:`\mathcal{L}_{\mathcal{G}}` after one step (none with
        :obj:`discriminator="mlp"`: the authors never step the generator there)."""
        hs, hm, ts, tm = real
        if self.discriminator == 'mlp':
            with torch.no_grad():
                fh, ft = self.generate(hs, hm), self.generate(ts, tm)
                return self.generator_loss([self.entity_critic(*fh), self.entity_critic(*ft)])
        fake = (*self.generate(hs, hm), *self.generate(ts, tm))
        loss_g = self.generator_loss(self.synthetic_scores(real, fake, rel_type))
        self._step_generator(loss_g, optimizer, grad_clip)
        return loss_g

    def extra_repr(self) -> str:
        return (f'slots={self.num_slots}, channels={self.channels}, '
                f'adversarial_weight={self.adversarial_weight}, '
                f'gradient_penalty={self.gradient_penalty}, gan_loss={self.gan_loss!r}, '
                f'discriminator={self.discriminator!r}, penalty_mode={self.penalty_mode!r}, '
                f'critic_through_generator={self.critic_through_generator}, '
                f'adversarial_reduction={self.adversarial_reduction!r}, '
                f'mask_missing={self.mask_missing}')
