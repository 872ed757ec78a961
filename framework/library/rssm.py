"""A DreamerV2-like recurrent state-space model with an ensemble of latent transition heads.

Shapes: ``B`` batch, ``T`` sequence length, ``H`` imagination horizon, ``M`` ensemble heads,
``E`` embedding size (an :class:`~framework.interfaces.Encoder`'s ``feature_dim``), ``A``
action size, ``h`` deterministic (GRU) size, ``z`` stochastic latent size. Features are
``concat(h, z)``.

Sequence convention (DreamerV2): ``actions[:, t]`` is the action that *led to* observation
``t`` and ``rewards[:, t]`` the reward received on that transition; both are ignored (zeroed)
where ``is_first[:, t]``, i.e. at the reset observation of an episode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from mbrl.models.util import EnsembleLinearLayer
from torch import nn
from torch.distributions import Normal, kl_divergence

from framework.interfaces import DynamicsEnsemble, Encoder, EnsemblePrediction, UncertaintyEstimator
from framework.library.layers import mlp
from framework.library.normaliser import ObservationNormaliser


def _gaussian_stats(raw: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(..., 2z)`` network outputs into a mean and a std ``softplus(raw) + min_std``."""
    mean, raw_std = raw.chunk(2, dim=-1)
    return mean, nn.functional.softplus(raw_std) + min_std


def _sample(
    mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Reparameterised draw ``mean + std * noise`` (differentiable in mean and std)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + std * noise


class LatentEnsembleHeads(DynamicsEnsemble):
    """``ensemble_size`` MLP heads from a deterministic state (optionally with an action) to a
    diagonal Gaussian over the next stochastic latent, evaluated as one batched network.

    Target: the stochastic latent ``z`` (``stoch_dim``). Input: ``concat(state, action)`` when
    ``action_dim > 0``, else ``state`` alone (the RSSM prior, where the action already entered
    the GRU). Layers are mbrl-lib's ``EnsembleLinearLayer`` (weights ``(M, in, out)``, one
    batched matmul for all heads), re-initialised like ``nn.Linear`` per head because mbrl-lib
    initialises them uniformly in ``[0, 1)``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int = 0,
        stoch_dim: int = 30,
        ensemble_size: int = 7,
        hidden_dim: int = 200,
        layers: int = 2,
        min_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.state_dim, self.action_dim, self.stoch_dim = state_dim, action_dim, stoch_dim
        self.ensemble_size, self.min_std = ensemble_size, min_std
        sizes = [state_dim + action_dim] + [hidden_dim] * layers + [2 * stoch_dim]
        self.layers = nn.ModuleList(
            EnsembleLinearLayer(ensemble_size, size_in, size_out)
            for size_in, size_out in zip(sizes[:-1], sizes[1:], strict=False)
        )
        for layer in self.layers:
            bound = layer.in_size**-0.5
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.uniform_(layer.bias, -bound, bound)

    def predict(
        self, state: torch.Tensor, action: torch.Tensor | None = None
    ) -> EnsemblePrediction:
        """``state`` ``(B, state_dim)`` shared by all heads or ``(M, B, state_dim)`` one slice
        per head; ``action`` likewise (``None`` when ``action_dim == 0``). Returns
        ``(M, B, stoch_dim)`` means and variances ``std**2``."""
        if (action is None) != (self.action_dim == 0):
            raise ValueError(
                f"these heads take {'no' if self.action_dim == 0 else 'an'} action "
                f"(action_dim={self.action_dim}); got action={action is not None}"
            )
        x = state if action is None else torch.cat([state, action], dim=-1)
        if x.dim() == 3 and x.shape[0] != self.ensemble_size:
            raise ValueError(
                f"per-head inputs need a leading axis of {self.ensemble_size}; got {tuple(x.shape)}"
            )
        for layer in self.layers[:-1]:
            x = nn.functional.elu(layer(x))
        out = self.layers[-1](x)  # (M, B, 2z): a shared (B, in) input broadcasts over heads
        mean, std = _gaussian_stats(out, self.min_std)
        return EnsemblePrediction(mean=mean, var=std**2)


@dataclass(frozen=True)
class LatentState:
    """A batch of model states: ``deter`` ``(..., h)`` and ``stoch`` ``(..., z)``."""

    deter: torch.Tensor
    stoch: torch.Tensor

    @property
    def features(self) -> torch.Tensor:
        """``concat(deter, stoch)``, ``(..., h + z)``."""
        return torch.cat([self.deter, self.stoch], dim=-1)

    def flatten_detached(self) -> LatentState:
        """All leading axes merged into one and gradients cut: start states for imagination."""
        return LatentState(
            self.deter.detach().reshape(-1, self.deter.shape[-1]),
            self.stoch.detach().reshape(-1, self.stoch.shape[-1]),
        )


@dataclass(frozen=True)
class ObserveOutput:
    """Filtering results for ``(B, T)`` sequences.

    ``posterior`` holds the sampled ``(B, T, ·)`` states; ``post_mean``/``post_std`` are
    ``(B, T, z)``; ``prior_mean``/``prior_std`` are every head's prior ``(M, B, T, z)``.
    """

    posterior: LatentState
    post_mean: torch.Tensor
    post_std: torch.Tensor
    prior_mean: torch.Tensor
    prior_std: torch.Tensor


@dataclass(frozen=True)
class ImagineOutput:
    """An imagined rollout of ``H`` steps (the start state is not included).

    ``features`` ``(B, H, h + z)`` and ``actions`` ``(B, H, A)``, where ``actions[:, k]`` led
    to ``features[:, k]``; ``prior_mean``/``prior_std`` ``(M, B, H, z)`` are all heads'
    predictions of step ``k``'s latent, of which ``head[:, k]`` ``(B, H)`` was sampled.
    """

    features: torch.Tensor
    actions: torch.Tensor
    prior_mean: torch.Tensor
    prior_std: torch.Tensor
    head: torch.Tensor

    def uncertainty(self, estimator: UncertaintyEstimator) -> torch.Tensor:
        """``estimator`` applied to the heads' predictions of every step: ``(B, H)``."""
        heads, batch, horizon, stoch = self.prior_mean.shape
        prediction = EnsemblePrediction(
            mean=self.prior_mean.reshape(heads, batch * horizon, stoch),
            var=self.prior_std.reshape(heads, batch * horizon, stoch) ** 2,
        )
        return estimator(prediction).reshape(batch, horizon)


class RSSM(nn.Module):
    """Recurrent state-space model with Gaussian latents (DreamerV2, continuous latents).

    ``h_t = GRU(h_{t-1}, MLP(z_{t-1}, a_t))``; posterior ``q(z_t | h_t, e_t)`` from the
    embedding; prior ``p(z_t | h_t, a_t)`` from each of ``ensemble_size`` heads
    (:class:`LatentEnsembleHeads`), which see the action themselves so that they can disagree
    about actions the data never took (the shared GRU alone would map those to states the
    heads agree on). Training fits every head to the posterior (see
    :func:`balanced_kl`, which averages the KL over heads); imagination samples each step's
    latent from one head drawn uniformly at random per batch element and step.
    """

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter_dim: int = 200,
        stoch_dim: int = 30,
        hidden_dim: int = 200,
        ensemble_size: int = 7,
        min_std: float = 0.1,
        heads: LatentEnsembleHeads | None = None,
    ) -> None:
        """``heads`` replaces the default ``ensemble_size`` one-layer heads (e.g. a
        ``latent_ensemble`` built from the ``dynamics`` config); it must map ``deter_dim``
        states and ``action_dim`` actions to ``stoch_dim`` latents."""
        super().__init__()
        self.deter_dim, self.stoch_dim, self.action_dim = deter_dim, stoch_dim, action_dim
        self.min_std = min_std
        self.feature_dim = deter_dim + stoch_dim
        self.img_in = nn.Sequential(nn.Linear(stoch_dim + action_dim, hidden_dim), nn.ELU())
        self.cell = nn.GRUCell(hidden_dim, deter_dim)
        self.posterior_net = mlp([deter_dim + embed_dim, hidden_dim, 2 * stoch_dim])
        if heads is None:
            heads = LatentEnsembleHeads(
                deter_dim, action_dim, stoch_dim, ensemble_size, hidden_dim, 1, min_std
            )
        if (heads.state_dim, heads.action_dim, heads.stoch_dim) != (
            deter_dim,
            action_dim,
            stoch_dim,
        ):
            raise ValueError(
                f"RSSM heads must map deter_dim={deter_dim} states and action_dim={action_dim} "
                f"actions to stoch_dim={stoch_dim} latents; got state_dim={heads.state_dim}, "
                f"action_dim={heads.action_dim}, stoch_dim={heads.stoch_dim}"
            )
        self.heads = heads

    def initial(self, batch: int, device: torch.device | None = None) -> LatentState:
        """All-zero states for ``batch`` sequences."""
        zeros = torch.zeros(batch, self.feature_dim, device=device)
        return LatentState(zeros[:, : self.deter_dim], zeros[:, self.deter_dim :])

    def _recur(self, state: LatentState, action: torch.Tensor) -> torch.Tensor:
        """Next deterministic state ``(B, h)`` from ``state`` and the action ``(B, A)``."""
        return self.cell(self.img_in(torch.cat([state.stoch, action], dim=-1)), state.deter)

    def _filter(
        self,
        state: LatentState,
        action: torch.Tensor,
        embed: torch.Tensor,
        keep: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[LatentState, torch.Tensor, torch.Tensor]:
        """One filtering step: state and action zeroed where ``keep`` ``(B, 1)`` is 0, then
        the posterior from the new deterministic state and ``embed``; returns the sampled
        state and the posterior's mean and std."""
        state = LatentState(state.deter * keep, state.stoch * keep)
        deter = self._recur(state, action * keep)
        raw = self.posterior_net(torch.cat([deter, embed], dim=-1))
        mean, std = _gaussian_stats(raw, self.min_std)
        return LatentState(deter, _sample(mean, std, generator)), mean, std

    def observe_step(
        self,
        state: LatentState | None,
        action: torch.Tensor,
        embed: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> LatentState:
        """Filter one new observation while acting: ``state`` ``(B, ·)`` from the previous
        call (``None`` at an episode's first observation, which zeroes the state and the
        action), ``action`` ``(B, A)`` the action taken since, ``embed`` ``(B, E)``. The
        latent is sampled from the posterior, or is its mean when not ``sample`` (a
        deterministic filter, for evaluation)."""
        batch = embed.shape[0]
        keep = torch.full((batch, 1), float(state is not None), device=embed.device)
        state = self.initial(batch, embed.device) if state is None else state
        new_state, mean, _ = self._filter(state, action, embed, keep, generator)
        return new_state if sample else LatentState(new_state.deter, mean)

    def observe(
        self,
        embeds: torch.Tensor,
        actions: torch.Tensor,
        is_first: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> ObserveOutput:
        """Filter ``embeds`` ``(B, T, E)`` with ``actions`` ``(B, T, A)``; where ``is_first``
        ``(B, T)`` the state and the action are reset to zero before the step."""
        batch, length = embeds.shape[:2]
        state = self.initial(batch, embeds.device)
        keep = (~is_first.bool()).to(embeds.dtype).unsqueeze(-1)  # (B, T, 1)
        deters, stochs, means, stds = [], [], [], []
        for t in range(length):
            state, mean, std = self._filter(
                state, actions[:, t], embeds[:, t], keep[:, t], generator
            )
            deters.append(state.deter)
            stochs.append(state.stoch)
            means.append(mean)
            stds.append(std)
        posterior = LatentState(torch.stack(deters, 1), torch.stack(stochs, 1))
        # The prior does not feed the recurrence, so all heads run once on all B*T states.
        prior = self.heads.predict(
            posterior.deter.reshape(batch * length, self.deter_dim),
            (actions * keep).reshape(batch * length, self.action_dim),
        )
        prior_shape = (self.heads.ensemble_size, batch, length, self.stoch_dim)
        return ObserveOutput(
            posterior=posterior,
            post_mean=torch.stack(means, 1),
            post_std=torch.stack(stds, 1),
            prior_mean=prior.mean.reshape(prior_shape),
            prior_std=prior.std.reshape(prior_shape),
        )

    def prior_step(
        self,
        state: LatentState,
        action: torch.Tensor,
        head: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[LatentState, EnsemblePrediction]:
        """One step of the model without an observation: the next state from ``state``
        ``(B, ·)`` and ``action`` ``(B, A)``, its latent drawn from head ``head[b]`` for each
        batch element ``b`` (``None``: the heads' mean prediction, no sampling); also returns
        every head's prediction ``(M, B, z)``."""
        deter = self._recur(state, action)
        prior = self.heads.predict(deter, action)
        if head is None:
            return LatentState(deter, prior.mean.mean(0)), prior
        rows = torch.arange(len(head), device=head.device)
        stoch = _sample(prior.mean[head, rows], prior.std[head, rows], generator)
        return LatentState(deter, stoch), prior

    def imagine(
        self,
        start: LatentState,
        policy_fn: Callable[[torch.Tensor], torch.Tensor],
        horizon: int,
        generator: torch.Generator | None = None,
    ) -> ImagineOutput:
        """Roll ``horizon`` steps from ``start`` (``(B, ·)`` states) with actions
        ``policy_fn(features (B, h + z)) -> (B, A)``; each step's latent is drawn from a head
        chosen uniformly at random per batch element. Differentiable through the dynamics."""
        batch = start.deter.shape[0]
        state = start
        features, actions, means, stds, heads = [], [], [], [], []
        for _ in range(horizon):
            action = policy_fn(state.features)
            head = torch.randint(
                self.heads.ensemble_size, (batch,), generator=generator, device=start.deter.device
            )
            state, prior = self.prior_step(state, action, head, generator)
            features.append(state.features)
            actions.append(action)
            means.append(prior.mean)
            stds.append(prior.std)
            heads.append(head)
        return ImagineOutput(
            features=torch.stack(features, 1),
            actions=torch.stack(actions, 1),
            prior_mean=torch.stack(means, 2),
            prior_std=torch.stack(stds, 2),
            head=torch.stack(heads, 1),
        )


def balanced_kl(
    post_mean: torch.Tensor,
    post_std: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_std: torch.Tensor,
    balance: float = 0.8,
    free_nats: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV2's balanced KL with free nats; returns ``(loss, kl)`` scalars (nats).

    Posterior ``(B, T, z)``; priors ``(M, B, T, z)`` (all heads) or ``(B, T, z)``. ``kl`` is
    ``KL(q || p)`` summed over ``z`` and averaged over heads, batch and time. ``loss`` is
    ``balance * KL(sg(q) || p) + (1 - balance) * max(KL(q || sg(p)), free)``: ``balance`` of
    the gradient trains the prior (every head alike), the rest pulls the posterior toward the
    priors. Unlike DreamerV2, which clamps both terms, free nats only spare the posterior: with
    low-dimensional states the KL sits below ``free`` all along, and a clamped prior term
    would then never train the heads that imagination samples from.
    """
    post = Normal(post_mean, post_std)
    post_sg = Normal(post_mean.detach(), post_std.detach())
    prior = Normal(prior_mean, prior_std)
    prior_sg = Normal(prior_mean.detach(), prior_std.detach())
    train_prior = kl_divergence(post_sg, prior).sum(-1).mean()
    train_post = kl_divergence(post, prior_sg).sum(-1).mean()
    loss = balance * train_prior + (1 - balance) * train_post.clamp(min=free_nats)
    return loss, train_prior.detach()


class ObservationDecoder(nn.Module, ABC):
    """Features ``(..., h + z)`` to the mean of a unit-variance Gaussian over observations.

    Implement:
        ``forward(features)``: the predicted mean, ``(..., *obs_shape)``, in target units.
        ``target(obs)``: observations ``(..., *obs_shape)`` in target units (float).
    """

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted observation means ``(..., *obs_shape)``."""

    @abstractmethod
    def target(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations converted to the decoder's float target units."""

    def nll(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Unit-variance Gaussian NLL without its constant, ``0.5 * ||mean - target||^2``,
        summed over observation dimensions and averaged over the leading ones; a scalar."""
        mean = self(features)
        squared = (mean - self.target(obs)) ** 2
        return 0.5 * squared.flatten(start_dim=features.dim() - 1).sum(-1).mean()


class MLPDecoder(ObservationDecoder):
    """Features to state vectors ``(..., obs_dim)`` through an ELU MLP."""

    def __init__(
        self, feature_dim: int, obs_dim: int, hidden_dim: int = 400, layers: int = 2
    ) -> None:
        super().__init__()
        self.net = mlp([feature_dim] + [hidden_dim] * layers + [obs_dim])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float()


class ConvDecoder(ObservationDecoder):
    """DreamerV2's image decoder: a linear layer to ``32 * depth`` channels at 1×1, then
    transposed convolutions (kernels 5, 5, 6, 6, stride 2, ELU) to ``(3, 64, 64)``. Targets are
    ``uint8`` images scaled like :class:`~framework.library.encoders.ConvEncoder`'s input,
    ``image / 255 - 0.5``."""

    def __init__(
        self, feature_dim: int, obs_shape: Sequence[int] = (3, 64, 64), depth: int = 32
    ) -> None:
        super().__init__()
        if tuple(obs_shape[1:]) != (64, 64):
            raise ValueError(f"conv decoder produces (channels, 64, 64) images; got {obs_shape}")
        self.obs_shape = tuple(obs_shape)
        channels = [32 * depth, 4 * depth, 2 * depth, depth, self.obs_shape[0]]
        blocks: list[nn.Module] = [
            nn.Linear(feature_dim, channels[0]),
            nn.Unflatten(-1, (-1, 1, 1)),
        ]
        for size_in, size_out, kernel in zip(
            channels[:-1], channels[1:], (5, 5, 6, 6), strict=False
        ):
            blocks += [nn.ConvTranspose2d(size_in, size_out, kernel, stride=2), nn.ELU()]
        self.net = nn.Sequential(*blocks[:-1])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        leading = features.shape[:-1]
        images = self.net(features.reshape(-1, features.shape[-1]))
        return images.reshape(*leading, *self.obs_shape)

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype != torch.uint8:
            raise TypeError(f"conv decoder targets are uint8 images; got {obs.dtype}")
        return obs.float() / 255.0 - 0.5


class WorldModel(nn.Module):
    """Encoder, RSSM, observation decoder and reward head, trained together by :meth:`elbo`.

    The reward head is an ELU MLP from features to a unit-variance Gaussian mean.
    ``obs_std`` is the observation noise the reconstruction term assumes (the decoder's NLL
    is divided by its square). At 1 (DreamerV2) a model of low-dimensional states gains too
    little from encoding them precisely to pay the KL: give states a small ``obs_std``.
    ``normaliser``: vector observations are standardised by it before the encoder reads them
    and before the decoder reconstructs them (so ``obs_std`` is in units of each dimension's
    spread); :meth:`embed` is the way in for every caller.
    """

    def __init__(
        self,
        encoder: Encoder,
        rssm: RSSM,
        decoder: ObservationDecoder,
        reward_hidden_dim: int = 400,
        reward_layers: int = 2,
        kl_balance: float = 0.8,
        free_nats: float = 1.0,
        kl_scale: float = 1.0,
        reward_scale: float = 1.0,
        obs_std: float = 1.0,
        normaliser: ObservationNormaliser | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.rssm, self.decoder = encoder, rssm, decoder
        self.normaliser = normaliser
        self.obs_std = obs_std
        self.reward_head = mlp([rssm.feature_dim] + [reward_hidden_dim] * reward_layers + [1])
        self.kl_balance, self.free_nats = kl_balance, free_nats
        self.kl_scale, self.reward_scale = kl_scale, reward_scale

    def observation_target(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` as the encoder reads it and the decoder reconstructs it (normalised)."""
        return obs if self.normaliser is None else self.normaliser(obs)

    def reconstruction_target(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw ``obs`` in the units the decoder reconstructs (normalised, float): what a decoded
        latent state is compared with."""
        return self.decoder.target(self.observation_target(obs))

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """The encoder's features ``(N, E)`` of raw observations ``(N, *obs_shape)``."""
        return self.encoder(self.observation_target(obs))

    def elbo(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        is_first: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, torch.Tensor], ObserveOutput]:
        """Negative ELBO terms for sequences ``obs`` ``(B, T, *obs_shape)``, ``actions``
        ``(B, T, A)``, ``rewards`` ``(B, T)``, ``is_first`` ``(B, T)``.

        Returns scalars ``reconstruction`` (observation NLL per step, at ``obs_std``),
        ``reward`` (reward NLL per step), ``kl_loss`` (:func:`balanced_kl`), ``kl`` (its
        unclamped value, for logging) and
        ``total = reconstruction + reward_scale * reward + kl_scale * kl_loss``; and the
        filtering results (start states for imagination).
        """
        batch, length = obs.shape[:2]
        obs = self.observation_target(obs)
        embeds = self.encoder(obs.flatten(0, 1)).reshape(batch, length, -1)
        observed = self.rssm.observe(embeds, actions, is_first, generator)
        features = observed.posterior.features
        reconstruction = self.decoder.nll(features, obs) / self.obs_std**2
        reward_mean = self.reward_head(features).squeeze(-1)
        reward = 0.5 * ((reward_mean - rewards) ** 2).mean()
        kl_loss, kl = balanced_kl(
            observed.post_mean,
            observed.post_std,
            observed.prior_mean,
            observed.prior_std,
            self.kl_balance,
            self.free_nats,
        )
        total = reconstruction + self.reward_scale * reward + self.kl_scale * kl_loss
        terms = {
            "reconstruction": reconstruction,
            "reward": reward,
            "kl_loss": kl_loss,
            "kl": kl,
            "total": total,
        }
        return terms, observed
