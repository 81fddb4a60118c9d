from contextlib import nullcontext
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_LOSSES = ('wasserstein', 'vanilla')
DISCRIMINATORS = ('score', 'mlp')


class CoMAT(torch.nn.Module):
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
    (h^*, r, t^*)\}` (Eq. 9):

    .. math::
        \mathcal{L}_{adv} = \sum_{(h^*, r, t^*) \in \mathcal{S}} \Big(
        \overline{\mathcal{F}(h^*, r, t^*)} - \overline{\mathcal{F}(h, r, t)} \Big),

    (bars are batch means). Per batch, one critic step then one generator step (Eq. 11), each
    with its own optimiser:

    .. math::
        \mathcal{L}_{\mathcal{D}} = \mathcal{L}_{kgc} + \lambda_1 \mathcal{L}_{adv} +
        \lambda_1 \beta\, \mathcal{L}_{gp}, \qquad
        \mathcal{L}_{\mathcal{G}} = -\frac{1}{|\mathcal{S}|} \sum_{\mathcal{S}}
        \overline{\mathcal{F}(h^*, r, t^*)},

    with the gradient penalty of WGAN-GP (Eq. 12) on random interpolates
    :math:`\bar{\mathbf{x}} = \alpha \mathbf{x} + (1 - \alpha) \mathbf{x}^*`,
    :math:`\alpha \sim U(0, 1)` per triple, of the real and synthetic head and tail stacks,

    .. math::
        \mathcal{L}_{gp} = \overline{\big(\|\nabla_{\bar{\mathbf{x}}_h}
        \mathcal{F}(\bar{\mathbf{x}}_h, r, \bar{\mathbf{x}}_t)\|_2 - 1\big)^2}.

    As in the authors' code (and WGAN-GP), the penalty is a term of the critic's loss, not of
    the generator's as Eq. 11 prints it; it is taken with respect to the head interpolate;
    interpolation is over the stacks of representations (a missing modality of the real
    entity is taken from the synthetic one), which makes it model-agnostic. The critic
    (:math:`\mathcal{D}`) is the wrapped model plus, with :obj:`discriminator="mlp"`, a
    two-layer MLP; the generator never moves in the critic step (its output is detached) and
    the critic never moves in the generator step (gradients are taken for the generator
    only).

    The wrapped model must provide ``modality_stack(index) -> (stack [*, S, D], mask [*, S])``
    (slot 0 the structural embedding) and ``score_stacks(head_stack, head_mask, rel_type,
    tail_stack, tail_mask) -> [*]`` — e.g. :class:`~torch_mmkg.nn.NATIVE` and
    :class:`~torch_mmkg.nn.TBKGC` — and be trained by negative sampling
    (:meth:`~torch_mmkg.nn.kge.KGEModel.loss`).

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
        discriminator (str, optional): :obj:`"score"` (the model's score function) or
            :obj:`"mlp"` (a two-layer MLP over the head and tail stacks and a relation
            embedding; ablation "w/ MLP as :math:`\mathcal{D}`"). (default: :obj:`"score"`)
        generator_lr (float, optional): The generator's learning rate (:obj:`None`: the
            trainer's). (default: :obj:`None`)
    """
    def __init__(self, model: torch.nn.Module, noise_channels: int = 64,
                 hidden_channels: int = 512, adversarial_weight: float = 1e-4,
                 gradient_penalty: float = 0.1, gan_loss: str = 'wasserstein',
                 discriminator: str = 'score', generator_lr: Optional[float] = None):
        super().__init__()
        missing = [a for a in ('modality_stack', 'score_stacks') if not hasattr(model, a)]
        if missing:
            raise TypeError(f"CoMAT needs a model exposing its per-modality representations; "
                            f"{model.__class__.__name__} lacks {missing}")
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")
        if discriminator not in DISCRIMINATORS:
            raise ValueError(f"discriminator must be one of {DISCRIMINATORS}, got "
                             f"{discriminator!r}")
        if adversarial_weight < 0 or gradient_penalty < 0:
            raise ValueError("adversarial_weight and gradient_penalty must be >= 0")
        self.model = [model]  # not a submodule: the trainer owns the model's parameters
        device = next(model.parameters()).device
        with torch.no_grad():
            stack, _ = model.modality_stack(torch.zeros(1, dtype=torch.long, device=device))
        self.num_slots, self.channels = stack.size(-2), stack.size(-1)
        if self.num_slots < 2:
            raise ValueError("CoMAT needs at least one modality besides the structure")
        self.noise_channels = int(noise_channels)
        self.adversarial_weight = float(adversarial_weight)
        self.gradient_penalty = float(gradient_penalty)
        self.gan_loss = gan_loss
        self.generator_lr = generator_lr
        S, D = self.num_slots, self.channels
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(self.noise_channels + S * D, hidden_channels),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden_channels, (S - 1) * D),
        )
        self.mlp: Optional[torch.nn.Module] = None
        if discriminator == 'mlp':
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(2 * S * D + D, hidden_channels),
                torch.nn.LeakyReLU(0.2),
                torch.nn.Linear(hidden_channels, 1),
            )
            self.mlp_rel = torch.nn.Embedding(model.num_relations, D)
        self.to(device)

    @property
    def wrapped(self) -> torch.nn.Module:
        return self.model[0]

    def generator_parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.generator.parameters()

    def critic_parameters(self) -> Iterator[torch.nn.Parameter]:
        r"""The discriminator's parameters beyond the model's own (the MLP's, if any)."""
        if self.mlp is None:
            return iter(())
        return iter(list(self.mlp.parameters()) + list(self.mlp_rel.parameters()))

    # Pieces ###################################################################################

    def generate(self, stack: Tensor, mask: Tensor, noise: Optional[Tensor] = None,
                 detach: bool = False) -> Tuple[Tensor, Tensor]:
        r"""A synthetic entity per row: the real structural slot (as given, it belongs to
        the critic) and generated modality slots (all present; detached from the generator
        if :obj:`detach`). Missing modalities are zeros in the generator's input, which is
        always detached from the critic.

        Shapes:
            - **input:** stack :math:`[B, S, D]`, mask :math:`[B, S]`, noise :math:`[B, Z]`
            - **output:** stack :math:`[B, S, D]`, mask :math:`[B, S]` (all True)
        """
        real = (stack * mask[..., None].to(stack.dtype)).detach().flatten(-2)
        if noise is None:
            noise = torch.randn(*real.shape[:-1], self.noise_channels, device=real.device,
                                dtype=real.dtype)
        with torch.no_grad() if detach else nullcontext():
            fake = self.generator(torch.cat([noise, real], dim=-1))
        fake = fake.view(*stack.shape[:-2], self.num_slots - 1, self.channels)
        return (torch.cat([stack[..., :1, :], fake], dim=-2),
                torch.ones_like(mask))

    def critic(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
               tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""The discriminator's score of triples given as stacks."""
        if self.mlp is None:
            return self.wrapped.score_stacks(head_stack, head_mask, rel_type, tail_stack,
                                             tail_mask)
        h = head_stack * head_mask[..., None].to(head_stack.dtype)
        t = tail_stack * tail_mask[..., None].to(tail_stack.dtype)
        x = torch.cat([h.flatten(-2), t.flatten(-2), self.mlp_rel(rel_type)], dim=-1)
        return self.mlp(x).squeeze(-1)

    def synthetic_scores(self, real: Sequence[Tensor], fake: Sequence[Tensor],
                         rel_type: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The critic's scores of :math:`(h^*, r, t)`, :math:`(h, r, t^*)` and
        :math:`(h^*, r, t^*)` from the real and synthetic (stack, mask) of heads and tails
        (:obj:`real = (hs, hm, ts, tm)`, likewise :obj:`fake`)."""
        hs, hm, ts, tm = real
        fhs, fhm, fts, ftm = fake
        return (self.critic(fhs, fhm, rel_type, ts, tm), self.critic(hs, hm, rel_type, fts, ftm),
                self.critic(fhs, fhm, rel_type, fts, ftm))

    def adversarial_loss(self, real_score: Tensor, fake_scores: Sequence[Tensor]) -> Tensor:
        r"""The critic's :math:`\mathcal{L}_{adv}` (Eq. 9, or its log-likelihood variant)."""
        if self.gan_loss == 'wasserstein':
            return sum(f.mean() - real_score.mean() for f in fake_scores)
        return sum(F.softplus(-real_score).mean() + F.softplus(f).mean() for f in fake_scores)

    def generator_loss(self, fake_scores: Sequence[Tensor]) -> Tensor:
        r""":math:`\mathcal{L}_{\mathcal{G}}`: the mean over the synthetic set of
        :math:`-\overline{s^*}` (or of :math:`-\log\sigma(s^*)`)."""
        if self.gan_loss == 'wasserstein':
            return -sum(f.mean() for f in fake_scores) / len(fake_scores)
        return sum(F.softplus(-f).mean() for f in fake_scores) / len(fake_scores)

    def penalty(self, real: Sequence[Tensor], fake: Sequence[Tensor], rel_type: Tensor,
                alpha: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathcal{L}_{gp}` on interpolates of the real and synthetic stacks (with
        :math:`\alpha` of shape :obj:`[B]` drawn uniformly unless given); differentiable
        with respect to the critic's parameters."""
        hs, hm, ts, tm = real
        fhs, _, fts, ftm = fake
        if alpha is None:
            alpha = torch.rand(hs.size(0), device=hs.device, dtype=hs.dtype)
        a = alpha.view(-1, 1, 1)
        # a missing real modality is taken from the synthetic entity
        hs = torch.where(hm[..., None], hs, fhs).detach()
        ts = torch.where(tm[..., None], ts, fts).detach()
        x_h = (a * hs + (1 - a) * fhs.detach()).requires_grad_(True)
        x_t = a * ts + (1 - a) * fts.detach()
        score = self.critic(x_h, ftm, rel_type, x_t, ftm)
        grad, = torch.autograd.grad(score.sum(), x_h, create_graph=True)
        # the norm's derivative is undefined at 0; a tiny floor keeps the double backward finite
        norm = torch.sqrt(grad.flatten(1).square().sum(dim=-1) + 1e-12)
        return ((norm - 1)**2).mean()

    # The step #################################################################################

    def train_step(self, batch: Sequence, critic_optimizer: torch.optim.Optimizer,
                   generator_optimizer: torch.optim.Optimizer,
                   grad_clip: Optional[float] = None,
                   kgc_loss: Optional[Callable[[Sequence], Tensor]] = None
                   ) -> Dict[str, Tensor]:
        r"""One critic step, then one generator step, on a batch :obj:`(head, rel, tail,
        negatives)` from the model's :meth:`loader`; returns the (detached) loss terms,
        :obj:`"loss"` being the critic's total. :obj:`kgc_loss` maps the batch to the
        completion loss :math:`\mathcal{L}_{kgc}` (default: the model's
        :meth:`~torch_mmkg.nn.KGEModel.loss`; the trainer passes its regime's)."""
        model = self.wrapped
        h, r, t, negatives = batch
        # critic (discriminator) step: the model, plus the MLP if any
        critic_optimizer.zero_grad(set_to_none=True)
        loss_kgc = (kgc_loss(batch) if kgc_loss is not None else
                    model.loss(h, r, t, negatives))
        hs, hm = model.modality_stack(h)
        ts, tm = model.modality_stack(t)
        fake = (*self.generate(hs, hm, detach=True), *self.generate(ts, tm, detach=True))
        real = (hs, hm, ts, tm)
        real_score = self.critic(hs, hm, r, ts, tm)
        adv = self.adversarial_loss(real_score, self.synthetic_scores(real, fake, r))
        gp = (self.penalty(real, fake, r) if self.gradient_penalty > 0 else
              loss_kgc.new_zeros(()))
        loss = loss_kgc + self.adversarial_weight * (adv + self.gradient_penalty * gp)
        if not torch.isfinite(loss):
            return {'loss': loss.detach(), 'kgc': loss_kgc.detach(), 'adv': adv.detach(),
                    'gp': gp.detach(), 'generator': loss.new_full((), float('nan'))}
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for g in critic_optimizer.param_groups for p in g['params']], grad_clip)
        critic_optimizer.step()

        # generator step: gradients for the generator only
        generator_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            hs, hm = model.modality_stack(h)
            ts, tm = model.modality_stack(t)
        fake = (*self.generate(hs, hm), *self.generate(ts, tm))
        loss_g = self.generator_loss(self.synthetic_scores((hs, hm, ts, tm), fake, r))
        params = list(self.generator.parameters())
        grads = torch.autograd.grad(loss_g, params)
        for p, g in zip(params, grads):
            p.grad = g
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        generator_optimizer.step()
        return {'loss': loss.detach(), 'kgc': loss_kgc.detach(), 'adv': adv.detach(),
                'gp': gp.detach(), 'generator': loss_g.detach()}

    def extra_repr(self) -> str:
        return (f'slots={self.num_slots}, channels={self.channels}, '
                f'adversarial_weight={self.adversarial_weight}, '
                f'gradient_penalty={self.gradient_penalty}, gan_loss={self.gan_loss!r}, '
                f'discriminator={"mlp" if self.mlp is not None else "score"!r}')
