"""A latent-model agent learning in imagination: a world model (encoder, RSSM with an ensemble of
transition heads, decoder, reward head), an actor and a critic trained on fresh imagined
rollouts from real latent states, and an optional behaviour prior that regularises the actor.

With ``alpha = 0`` and ``beta = 0`` this is DreamerV2's agent (continuous actions, dynamics
back-propagation); ``alpha > 0`` penalises imagined rewards by the ensemble's uncertainty and
``beta > 0`` pulls the actor toward the behaviour prior, as MOTO does. No termination head:
the tasks served here end by time limit only, so every imagined step is discounted by γ alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from framework.checkpoint import restore_optimiser
from framework.errors import UserInputError
from framework.interfaces import Encoder, UncertaintyEstimator
from framework.library.actor_critic import (
    BehaviourPrior,
    Critic,
    TanhGaussianActor,
    actor_loss,
    critic_loss,
    inside_action_box,
    reinforce_objective,
)
from framework.library.normaliser import ObservationNormaliser
from framework.library.returns import (
    lambda_returns,
    penalised_rewards,
    replay_lambda_returns,
)
from framework.library.rssm import (
    RSSM,
    ConvDecoder,
    LatentEnsembleHeads,
    LatentState,
    MLPDecoder,
    ObservationDecoder,
    ObserveOutput,
    WorldModel,
)
from framework.registry import ComponentRegistry
from framework.typed_config import typed_settings


@dataclass(frozen=True)
class ImaginationSettings:
    """How the actor and critic learn from imagined rollouts.

    ``horizon`` H imagined steps from every posterior state of a batch; ``gamma``/``lam`` the
    λ-return; ``alpha`` the uncertainty penalty ``r̃ = r̂ − α·u``; ``beta`` the weight of
    ``−log π_β(a|s)`` in the actor loss (needs a behaviour prior when positive);
    ``entropy_scale`` the entropy bonus; ``critic_tau`` the Polyak rate of the target critic
    (every update); ``start_states`` a random subset of that many posterior states to start
    from (``0``: all of them); ``replay_value_scale`` the weight of the critic's replay loss
    (``0``: none), its regression onto λ-returns of the batch's real rewards
    (:func:`~framework.library.returns.replay_lambda_returns`) as DreamerV3 adds with weight
    0.3. DreamerV3 annotates the replayed states with their imagined returns; here the target
    critic does, since imagination may start from a subset of them. ``actor_gradient`` how the
    returns reach the actor: ``dynamics`` back-propagates them through the model into its
    actions (DreamerV2 for continuous actions, and the paper); ``reinforce`` uses the
    score-function estimate of :func:`~framework.library.actor_critic.reinforce_objective`
    (DreamerV3), which needs no derivative of the model; the β term stays pathwise.
    ``policy_input`` what the actor and the behaviour prior read: ``latent``, the model state's
    features (the paper); ``observation`` (vector observations only), the normalised
    observation: the real one when acting and when fitting the prior, the world model's
    decoding of the imagined state in imagination. The critic reads the features either way.
    """

    horizon: int = 15
    gamma: float = 0.99
    lam: float = 0.95
    alpha: float = 1.0
    beta: float = 1.0
    entropy_scale: float = 1e-4
    critic_tau: float = 0.01
    start_states: int = 0
    replay_value_scale: float = 0.0
    actor_gradient: str = "dynamics"
    policy_input: str = "latent"


ACTOR_GRADIENTS = ("dynamics", "reinforce")
POLICY_INPUTS = ("latent", "observation")


@dataclass(frozen=True)
class OptimiserSettings:
    """Adam learning rates of the four parts and the gradient-norm clip applied to each."""

    model_lr: float = 3e-4
    actor_lr: float = 8e-5
    critic_lr: float = 8e-5
    prior_lr: float = 3e-4
    grad_clip: float = 100.0


@dataclass(frozen=True)
class Rollout:
    """An imagined rollout scored for learning, each ``(B, H)``: the model's rewards, the
    uncertainty ``u``, the penalised rewards, the λ-returns and the target critic's values
    ``V(s_t)`` of the states acted at (their bootstrap)."""

    rewards: torch.Tensor
    uncertainty: torch.Tensor
    penalised: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` take no gradients inside the block (inputs still do), so a
    loss back-propagated through them reaches only what lies before them."""
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def build_world_model(
    encoder: Encoder,
    heads: LatentEnsembleHeads,
    obs_shape: tuple[int, ...],
    action_dim: int,
    deter_dim: int = 200,
    stoch_dim: int = 30,
    hidden_dim: int = 200,
    min_std: float = 0.1,
    decoder_hidden_dim: int = 400,
    decoder_layers: int = 2,
    conv_depth: int = 32,
    reward_hidden_dim: int = 400,
    reward_layers: int = 2,
    kl_balance: float = 0.8,
    free_nats: float = 1.0,
    kl_scale: float = 1.0,
    reward_scale: float = 1.0,
    state_obs_std: float = 0.2,
    pixel_obs_std: float = 1.0,
    normalise_states: bool = True,
    state_min_std: float = 0.01,
) -> WorldModel:
    """A :class:`WorldModel` around ``encoder`` and the transition ``heads``: a conv decoder
    for image observations ``(3, 64, 64)`` reconstructed at noise ``pixel_obs_std``, an MLP
    decoder for vectors at ``state_obs_std`` (see :class:`WorldModel`'s ``obs_std``). With
    ``normalise_states``, vectors pass through an :class:`ObservationNormaliser` (identity
    until fitted, per-dimension spread floored at ``state_min_std``)."""
    pixels = len(obs_shape) == 3
    rssm = RSSM(
        encoder.feature_dim,
        action_dim,
        deter_dim,
        stoch_dim,
        hidden_dim,
        min_std=min_std,
        heads=heads,
    )
    decoder: ObservationDecoder
    if pixels:
        decoder = ConvDecoder(rssm.feature_dim, obs_shape, conv_depth)
    else:
        decoder = MLPDecoder(rssm.feature_dim, obs_shape[0], decoder_hidden_dim, decoder_layers)
    return WorldModel(
        encoder,
        rssm,
        decoder,
        reward_hidden_dim,
        reward_layers,
        kl_balance,
        free_nats,
        kl_scale,
        reward_scale,
        pixel_obs_std if pixels else state_obs_std,
        None
        if pixels or not normalise_states
        else ObservationNormaliser(obs_shape[0], state_min_std),
    )


class LatentAgent(nn.Module):
    """World model, actor, critic and optional behaviour prior, with their optimisers.

    Batches are sequence windows as :class:`~framework.replay.SequenceReplay` samples them
    (DreamerV3 row layout), as tensors: ``obs`` ``(B, T, *obs_shape)``, ``action``
    ``(B, T, A)``, ``reward`` ``(B, T)``, ``is_first`` ``(B, T)``.
    """

    def __init__(
        self,
        world_model: WorldModel,
        actor: TanhGaussianActor,
        critic: Critic,
        uncertainty: UncertaintyEstimator,
        prior: BehaviourPrior | None,
        imagination: ImaginationSettings,
        optimisers: OptimiserSettings,
    ) -> None:
        super().__init__()
        if imagination.beta > 0 and prior is None:
            raise ValueError("beta > 0 regularises the actor toward a behaviour prior; none given")
        if imagination.replay_value_scale < 0:
            raise ValueError(
                f"replay_value_scale weighs the critic's replay loss and must be >= 0; "
                f"got {imagination.replay_value_scale}"
            )
        if imagination.actor_gradient not in ACTOR_GRADIENTS:
            raise ValueError(
                f"actor_gradient must be one of {', '.join(ACTOR_GRADIENTS)}; "
                f"got {imagination.actor_gradient!r}"
            )
        if imagination.policy_input not in POLICY_INPUTS:
            raise ValueError(
                f"policy_input must be one of {', '.join(POLICY_INPUTS)}; "
                f"got {imagination.policy_input!r}"
            )
        if imagination.policy_input == "observation" and not isinstance(
            world_model.decoder, MLPDecoder
        ):
            raise ValueError(
                "policy_input observation reads vector observations (encoder=state); "
                "pixel observations need policy_input latent"
            )
        self.world_model, self.actor, self.critic, self.prior = world_model, actor, critic, prior
        self.uncertainty, self.imagination = uncertainty, imagination
        self.grad_clip = optimisers.grad_clip
        self.optimisers = {
            "model": torch.optim.Adam(world_model.parameters(), optimisers.model_lr),
            "actor": torch.optim.Adam(actor.parameters(), optimisers.actor_lr),
            "critic": torch.optim.Adam(critic.online.parameters(), optimisers.critic_lr),
        }
        if prior is not None:
            self.optimisers["prior"] = torch.optim.Adam(prior.parameters(), optimisers.prior_lr)

    @property
    def policy_reads_observation(self) -> bool:
        """Whether the actor and the prior read observations (``policy_input``) rather than
        the model state's features."""
        return self.imagination.policy_input == "observation"

    def policy_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """What the actor and the prior read at model states ``features`` ``(..., F)``: the
        features, or with :attr:`policy_reads_observation` their decoding into a normalised
        observation ``(..., O)``, differentiable in ``features`` but not in the decoder's
        parameters (a loss through it trains what lies before it only)."""
        if not self.policy_reads_observation:
            return features
        with frozen(self.world_model.decoder):
            return self.world_model.decoder(features)

    def _step(self, name: str, loss: torch.Tensor, module: nn.Module) -> float:
        """One clipped Adam step of ``module`` on ``loss``; returns the gradient norm."""
        optimiser = self.optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
        optimiser.step()
        return float(norm)

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One update of the world model's ELBO on ``batch``, then of actor and critic on
        rollouts imagined from the batch's posterior states. Returns scalar metrics."""
        metrics, observed = self.update_world_model(batch)
        start = observed.posterior.flatten_detached()
        if self.imagination.start_states and self.imagination.start_states < len(start.deter):
            picks = torch.randperm(len(start.deter), device=start.deter.device)
            picks = picks[: self.imagination.start_states]
            start = LatentState(start.deter[picks], start.stoch[picks])
        replay = None
        if self.imagination.replay_value_scale > 0:
            replay = self.replay_value_targets(batch, observed)
        metrics.update(self._update_actor_critic(start, replay))
        return metrics

    @torch.no_grad()
    def replay_value_targets(
        self, batch: Mapping[str, torch.Tensor], observed: ObserveOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic's replay-loss inputs: the batch's posterior features of rows
        ``0..T-2`` ``(B, T-1, F)`` and their λ-returns over the batch's real rewards,
        bootstrapped from the target critic ``(B, T-1)``."""
        features = observed.posterior.features.detach()
        targets = replay_lambda_returns(
            batch["reward"],
            self.critic.target_value(features),
            batch["is_first"],
            self.imagination.gamma,
            self.imagination.lam,
        )
        return features[:, :-1], targets

    def update_world_model(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, float], ObserveOutput]:
        """One clipped Adam step of the world model's ELBO on ``batch``; returns the loss terms
        and gradient norm, and the batch filtered through the model."""
        terms, observed = self.world_model.elbo(
            batch["obs"], batch["action"], batch["reward"], batch["is_first"]
        )
        metrics = {f"model_{key}": float(value.detach()) for key, value in terms.items()}
        metrics["model_grad_norm"] = self._step("model", terms["total"], self.world_model)
        return metrics, observed

    def fit_prior(self, features: torch.Tensor, actions: torch.Tensor, batch_size: int) -> float:
        """One maximum-likelihood step of the behaviour prior on ``batch_size`` random rows of
        ``features`` ``(N, F)`` and the ``actions`` ``(N, A)`` taken there (for instance
        :func:`episode_features` of the offline data); returns the batch's NLL."""
        if self.prior is None:
            raise ValueError("this agent has no behaviour prior to fit")
        rows = torch.randint(len(features), (batch_size,), device=features.device)
        nll = self.prior.nll(features[rows], actions[rows])
        self._step("prior", nll, self.prior)
        return float(nll.detach())

    def start_actor_at_prior(self) -> None:
        """Copy the behaviour prior's weights into the actor and clear the actor's optimiser
        state. The two heads share their layout, and both act at ``tanh`` of the same mean
        output, so the actor's mode becomes the prior's mean; its σ differs, since the actor
        squashes the log-std into a wider range."""
        if self.prior is None:
            raise ValueError("this agent has no behaviour prior to start the actor at")
        self.actor.net.load_state_dict(self.prior.net.state_dict())
        self.optimisers["actor"].state.clear()

    def imagine(
        self,
        start: LatentState,
        first_action: torch.Tensor | None = None,
        action_offset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Rollout]:
        """Roll the actor ``horizon`` steps from ``start`` through the model (world model frozen,
        gradients reaching the actor through its actions). Returns the states ``s_0..s_H``
        ``(B, H+1, F)``, the actions ``a_0..a_{H-1}`` ``(B, H, A)`` and the scored rollout.
        ``first_action`` ``(B, A)``, if given, is taken at ``start`` instead of the actor's (to
        probe how the returns depend on it). ``action_offset`` ``(B, A)``, if given, is added
        to each action the actor takes, kept inside the action box (a persistent perturbation,
        for :class:`~framework.library.lookahead.ImaginedLookahead`)."""
        settings = self.imagination
        steps = iter(range(settings.horizon))

        def policy(features: torch.Tensor) -> torch.Tensor:
            if next(steps) == 0 and first_action is not None:
                return first_action
            action = self.actor.sample(self.policy_inputs(features)).action
            if action_offset is None:
                return action
            return inside_action_box(action + action_offset)

        with frozen(self.world_model):
            rollout = self.world_model.rssm.imagine(start, policy, settings.horizon)
            states = torch.cat([start.features.unsqueeze(1), rollout.features], dim=1)
            rewards = self.world_model.reward_head(rollout.features).squeeze(-1)
        uncertainty = rollout.uncertainty(self.uncertainty)
        penalised = penalised_rewards(rewards, uncertainty, settings.alpha)
        values = self.critic.target_value(states)
        discounts = torch.full_like(rewards, settings.gamma)
        returns = lambda_returns(penalised, values, discounts, settings.lam)
        scored = Rollout(rewards, uncertainty, penalised, returns, values[:, :-1])
        return states, rollout.actions, scored

    def actor_critic_losses(
        self, start: LatentState
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Actor and critic losses on a rollout imagined from ``start``, and metrics.

        Actor: :func:`~framework.library.actor_critic.actor_loss` of the λ-returns (or, with
        ``actor_gradient = reinforce``, of their score-function surrogate), the frozen
        behaviour prior's ``log π_β`` of the actor's imagined actions (zeros when ``beta`` is
        0) and the actor's entropy at the imagined states. Critic: regression of ``V(s_t)``,
        ``t < H``, onto the stop-gradient λ-returns.
        """
        settings = self.imagination
        if settings.actor_gradient == "reinforce":
            with torch.no_grad():
                states, actions, rollout = self.imagine(start)
                acting_states = states[:, :-1]
                inputs = self.policy_inputs(acting_states)
            objective = reinforce_objective(
                self.actor.log_prob(inputs, actions),
                rollout.returns,
                rollout.values,
            )
        else:
            states, actions, rollout = self.imagine(start)
            acting_states = states[:, :-1]
            inputs = self.policy_inputs(acting_states)
            objective = rollout.returns
        if self.prior is not None and settings.beta > 0:
            if settings.actor_gradient == "reinforce":
                # The regulariser's gradient stays pathwise: fresh actions at the same states.
                actions = self.actor.sample(inputs).action
            with frozen(self.prior):
                log_prob_behaviour = self.prior.log_prob(inputs, actions)
        else:
            log_prob_behaviour = torch.zeros_like(rollout.returns)
        entropy = self.actor.entropy(inputs.detach())
        loss = actor_loss(
            objective, log_prob_behaviour, entropy, settings.beta, settings.entropy_scale
        )
        value_loss = critic_loss(self.critic(acting_states.detach()), rollout.returns)
        logged = {
            "imagined_reward": rollout.rewards,
            "imagined_uncertainty": rollout.uncertainty,
            "imagined_return": rollout.returns,
            "policy_entropy": entropy,
            "behaviour_log_prob": log_prob_behaviour,
        }
        metrics = {key: float(value.detach().mean()) for key, value in logged.items()}
        return loss, value_loss, metrics

    def _update_actor_critic(
        self, start: LatentState, replay: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> dict[str, float]:
        """One step of actor and critic on a rollout imagined from ``start``; ``replay``
        (:meth:`replay_value_targets`) adds the critic's replay loss."""
        loss, value_loss, metrics = self.actor_critic_losses(start)
        if replay is not None:
            replay_loss = critic_loss(self.critic(replay[0]), replay[1])
            value_loss = value_loss + self.imagination.replay_value_scale * replay_loss
            metrics["critic_replay_loss"] = float(replay_loss.detach())
        metrics["actor_grad_norm"] = self._step("actor", loss, self.actor)
        metrics["critic_grad_norm"] = self._step("critic", value_loss, self.critic.online)
        self.critic.update_target(self.imagination.critic_tau)
        losses = {"actor_loss": float(loss.detach()), "critic_loss": float(value_loss.detach())}
        return {**losses, **metrics}

    def optimiser_state(self) -> dict[str, dict]:
        """Every optimiser's ``state_dict``, for checkpoints."""
        return {name: optimiser.state_dict() for name, optimiser in self.optimisers.items()}

    def load_optimiser_state(self, state: Mapping[str, dict]) -> None:
        """Restore :meth:`optimiser_state`, at this agent's own learning rates."""
        for name, optimiser in self.optimisers.items():
            restore_optimiser(optimiser, state[name])


@torch.no_grad()
def episode_features(
    world_model: WorldModel,
    episodes: Sequence[Mapping[str, np.ndarray]],
    obs_key: str,
    device: torch.device,
    encode_chunk: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Filter whole episodes (episode layout: ``T + 1`` observations under ``obs_key``, ``T``
    actions) through the world model, sampling the posterior as training does. Returns the
    features ``(N, F)`` of the N = ΣT states an action was taken at, and those actions
    ``(N, A)``. Episodes of equal length are filtered as one batch; observations are encoded
    ``encode_chunk`` at a time to bound memory with images."""
    by_length: dict[int, list[Mapping[str, np.ndarray]]] = defaultdict(list)
    for episode in episodes:
        by_length[len(episode["action"])].append(episode)
    features, actions = [], []
    for length, group in by_length.items():
        obs = torch.as_tensor(np.stack([e[obs_key] for e in group]), device=device)
        taken = torch.as_tensor(
            np.stack([e["action"] for e in group]), dtype=torch.float32, device=device
        )
        count = len(group)
        # Replay rows: row t holds observation t and the action taken before it.
        previous = torch.cat([torch.zeros_like(taken[:, :1]), taken], dim=1)
        is_first = torch.zeros(count, length + 1, dtype=torch.bool, device=device)
        is_first[:, 0] = True
        flat = obs.flatten(0, 1)
        embeds = torch.cat(
            [
                world_model.embed(flat[i : i + encode_chunk])
                for i in range(0, len(flat), encode_chunk)
            ]
        ).reshape(count, length + 1, -1)
        posterior = world_model.rssm.observe(embeds, previous, is_first).posterior
        features.append(posterior.features[:, :-1].flatten(0, 1))
        actions.append(taken.flatten(0, 1))
    return torch.cat(features), torch.cat(actions)


@torch.no_grad()
def episode_policy_inputs(
    agent: LatentAgent,
    episodes: Sequence[Mapping[str, np.ndarray]],
    obs_key: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the behaviour prior is fitted on: the actor's inputs ``(N, ·)`` at the N = ΣT
    states of ``episodes`` an action was taken at, and those actions ``(N, A)``. The inputs are
    :func:`episode_features`, or with :attr:`LatentAgent.policy_reads_observation` the
    normalised observations as acting reads them."""
    if not agent.policy_reads_observation:
        return episode_features(agent.world_model, episodes, obs_key, device)
    obs = torch.cat([torch.as_tensor(e[obs_key][:-1], device=device) for e in episodes])
    actions = [torch.as_tensor(e["action"], dtype=torch.float32, device=device) for e in episodes]
    return agent.world_model.reconstruction_target(obs), torch.cat(actions)


def batch_to_tensors(
    batch: Mapping[str, np.ndarray], obs_key: str, device: torch.device
) -> dict[str, torch.Tensor]:
    """A replay batch as the tensors :meth:`LatentAgent.update` takes: ``obs`` from
    ``obs_key`` (images stay uint8), ``action``/``reward`` float32, ``is_first`` bool."""
    return {
        "obs": torch.as_tensor(batch[obs_key], device=device),
        "action": torch.as_tensor(batch["action"], dtype=torch.float32, device=device),
        "reward": torch.as_tensor(batch["reward"], dtype=torch.float32, device=device),
        "is_first": torch.as_tensor(batch["is_first"], device=device),
    }


def build_latent_agent(
    registry: ComponentRegistry,
    cfg: DictConfig,
    obs_shape: tuple[int, ...],
    action_dim: int,
    with_prior: bool,
) -> LatentAgent:
    """A :class:`LatentAgent` from a run's config: the ``encoder``, ``dynamics`` (latent
    transition heads) and ``uncertainty`` components from the registry, the ``world_model``
    section's sizes, and from ``algo`` the ``actor``/``critic`` sizes, the
    :class:`ImaginationSettings` fields and ``optim`` (:class:`OptimiserSettings`)."""
    sizes = OmegaConf.to_container(cfg.world_model, resolve=True)
    encoder = registry.build("encoder", cfg.encoder, obs_shape=obs_shape)
    heads = registry.build(
        "dynamics",
        cfg.dynamics,
        state_dim=sizes.get("deter_dim", 200),
        action_dim=action_dim,
        stoch_dim=sizes.get("stoch_dim", 30),
    )
    if not isinstance(heads, LatentEnsembleHeads):
        raise UserInputError(
            f"latent-model agents need latent transition heads: dynamics={cfg.dynamics.name!r} "
            f"builds a {type(heads).__name__}; use dynamics=latent_ensemble"
        )
    try:
        world_model = build_world_model(encoder, heads, obs_shape, action_dim, **sizes)
    except TypeError as error:
        raise UserInputError(f"world_model config: {error}") from None
    feature_dim = world_model.rssm.feature_dim
    imagination = typed_settings(ImaginationSettings, cfg.algo, "algo")
    policy_dim = obs_shape[0] if imagination.policy_input == "observation" else feature_dim
    actor = TanhGaussianActor(policy_dim, action_dim, **cfg.algo.actor)
    # The prior shares the actor's sizes, not its log-std bounds (the actor's keys may set them).
    prior_sizes = {k: cfg.algo.actor[k] for k in ("hidden_dim", "layers") if k in cfg.algo.actor}
    prior = BehaviourPrior(policy_dim, action_dim, **prior_sizes) if with_prior else None
    critic = Critic(feature_dim, **cfg.algo.critic)
    uncertainty = registry.build("uncertainty", cfg.uncertainty)
    optimisers = typed_settings(OptimiserSettings, cfg.algo.optim, "algo.optim")
    try:
        return LatentAgent(world_model, actor, critic, uncertainty, prior, imagination, optimisers)
    except ValueError as error:  # the settings' own checks, on values from the config
        raise UserInputError(f"algo: {error}. Fix the override or the config.") from None
