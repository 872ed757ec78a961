"""Offline pre-training, then online fine-tuning, of a latent-model agent (world model and
actor-critic in imagination, :class:`~framework.library.latent_agent.LatentAgent`): the
phases as the config lists them (``phase=offline`` pre-trains and saves;
``phase=online init=<checkpoint>`` fine-tunes; ``phase=all`` both), the offline data, the
online episodes stored on disk, checkpoints and, from pixels, an imagination GIF.

As it stands (``alpha``/``beta`` 0) this is the Dreamer-style agent trained naively offline,
then online. Algorithms built on it add their own parts through :attr:`with_prior`,
:meth:`train_step` and :meth:`on_online_episode` (MOTO: the behaviour prior, and α's and β's
schedule).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from framework.checkpoint import load_checkpoint
from framework.data.format import Episode
from framework.data.offline import DataSettings
from framework.errors import TerminationRequested, UserInputError
from framework.evaluation import save_video
from framework.interfaces import Algorithm, Policy, RunContext
from framework.library.imagination_video import open_loop_frames
from framework.library.latent_agent import batch_to_tensors, build_latent_agent
from framework.library.latent_policy import LatentPolicy
from framework.library.lookahead import ImaginedLookahead
from framework.library.observed_env import observed_env
from framework.phases import (
    CHECKPOINT,
    OfflineSettings,
    OnlineSettings,
    PhaseRunner,
    pretrained_offline_only,
)
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings


@dataclass(frozen=True)
class ReplaySettings:
    """Windows of ``sequence_length`` rows, inside one episode or, with ``cross_episode_windows``,
    anywhere in the stream of stored episodes (:class:`~framework.replay.SequenceReplay`);
    online episodes kept up to ``online_capacity_steps`` rows (the oldest evicted first)."""

    sequence_length: int = 50
    online_capacity_steps: int = 1_000_000
    cross_episode_windows: bool = True


@dataclass(frozen=True)
class ActingSettings:
    """``acting_polyak_rate``: when positive, the policy acts (exploring and evaluating) with a
    Polyak average of the world model and the actor, moved toward the live weights at this rate
    after every update; 0 acts with the live weights, as the paper does. A slow average (0.002)
    kept the easy tasks' pre-trained behaviour through the switch to online data and lagged
    what fine-tuning learns on the hard tasks; figures in docs/moto_experiments.md.
    ``acting_polyak_doubling_episodes``: when positive, the rate doubles every this many online
    episodes until it reaches 1 (acting with the live weights), so that the average guards the
    switch to online data and then stops lagging; 0 keeps the rate fixed.
    ``lookahead_candidates``: when 2 or more, every action is chosen among this many
    candidates around the actor's by the imagined returns
    (:class:`~framework.library.lookahead.ImaginedLookahead`, spread ``lookahead_noise``,
    ``lookahead_particles`` rollouts each);
    0 acts with the actor alone, as the paper does.
    ``lookahead_evaluates``: whether the lookahead also chooses the greedy evaluation
    actions; false: it only collects the online episodes and evaluation measures the actor
    alone, at a third of the lookahead's acting cost with evaluations of 10 episodes every 5.
    ``exploration_std_scale``: multiplies the actor's σ when it collects the online episodes
    (evaluations act with the mode); 1 samples the actor as it is, as the paper does."""

    acting_polyak_rate: float = 0.0
    acting_polyak_doubling_episodes: float = 0.0
    lookahead_candidates: int = 0
    lookahead_noise: float = 0.1
    lookahead_particles: int = 1
    lookahead_evaluates: bool = True
    exploration_std_scale: float = 1.0

    def rate_after(self, online_episodes: int) -> float:
        """The averaging rate once ``online_episodes`` online episodes are stored."""
        if self.acting_polyak_doubling_episodes <= 0:
            return self.acting_polyak_rate
        doublings = online_episodes / self.acting_polyak_doubling_episodes
        return min(1.0, self.acting_polyak_rate * 2.0**doublings)


PHASES = {"all": ("offline", "online"), "offline": ("offline",), "online": ("online",)}


def checkpoint_path(init: str) -> Path:
    """``init`` as a checkpoint file: a file as given, or a run folder's ``checkpoint.pt``."""
    path = Path(init)
    return path / CHECKPOINT if path.is_dir() else path


class LatentOfflineToOnline(Algorithm):
    """See the module docstring. Results: ``offline_success`` (after pre-training),
    ``final_success``, ``best_success``, ``online_episodes``."""

    resumable = True

    #: Build the agent with a behaviour prior (its fitting is the subclass's business).
    with_prior = False

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg, registry = context.cfg, context.registry
        if cfg.phase not in PHASES:
            raise UserInputError(f"phase must be one of {', '.join(PHASES)}; got {cfg.phase!r}")
        if cfg.phase == "online" and cfg.init is None:
            raise UserInputError(
                "phase=online fine-tunes a pre-trained agent: add init=<checkpoint file or run "
                "folder> (from a phase=offline run)"
            )
        self.replay_settings = typed_settings(ReplaySettings, cfg.algo, "algo")
        self.offline_settings = typed_settings(OfflineSettings, cfg.algo.offline, "algo.offline")
        self.online_settings = typed_settings(OnlineSettings, cfg.algo.online, "algo.online")
        self.observed = observed_env(registry, cfg, context.seed)
        self.env_factory, self.obs_key = self.observed.factory, self.observed.obs_key
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.offline_episodes: list[Episode] = []
        self.agent = build_latent_agent(
            registry,
            cfg,
            self.observed.obs_shape,
            self.observed.action_dim,
            with_prior=self.with_prior,
        ).to(context.device)
        self.acting_settings = typed_settings(ActingSettings, cfg.algo, "algo")
        rate = self.acting_settings.acting_polyak_rate
        if not 0.0 <= rate <= 1.0:
            raise UserInputError(f"algo.acting_polyak_rate must lie in [0, 1]; got {rate}")
        if self.acting_settings.acting_polyak_doubling_episodes < 0:
            raise UserInputError(
                "algo.acting_polyak_doubling_episodes must be >= 0 (0: a fixed rate); got "
                f"{self.acting_settings.acting_polyak_doubling_episodes}"
            )
        if self.acting_settings.exploration_std_scale <= 0:
            raise UserInputError(
                "algo.exploration_std_scale multiplies the actor's σ and must be > 0 (1: the "
                f"actor's own); got {self.acting_settings.exploration_std_scale}"
            )
        self.lookahead = self._lookahead()
        self._live = nn.ModuleDict(
            {"world_model": self.agent.world_model, "actor": self.agent.actor}
        )
        # torch's AveragedModel: an exponential moving average of the parameters; buffers (the
        # state normaliser's statistics) are copied from the live model at each update.
        self.acting = (
            AveragedModel(self._live, multi_avg_fn=get_ema_multi_avg_fn(1.0 - rate))
            if rate > 0
            else None
        )

    def _lookahead(self) -> ImaginedLookahead | None:
        """The acting lookahead the settings ask for (``lookahead_candidates`` 0: none)."""
        settings = self.acting_settings
        if settings.lookahead_candidates == 0:
            return None
        if settings.acting_polyak_rate > 0:
            raise UserInputError(
                "algo.lookahead_candidates scores candidates with the live model; it cannot be "
                "combined with algo.acting_polyak_rate > 0 (set one of them to 0)"
            )
        try:
            return ImaginedLookahead(
                self.agent,
                settings.lookahead_candidates,
                settings.lookahead_noise,
                settings.lookahead_particles,
            )
        except ValueError as error:
            raise UserInputError(
                f"algo.lookahead_{error}. algo.lookahead_candidates=0 acts with the actor alone."
            ) from None

    # The SequenceLearner protocol (framework.phases).
    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        """One agent update on a batch of sequence windows, then the acting average's."""
        metrics = self.agent.update(batch_to_tensors(batch, self.obs_key, self.context.device))
        if self.acting is not None:
            self.acting.update_parameters(self._live)
        return metrics

    def on_online_episode(self, episode: int) -> None:
        """A hook: called with ``n`` once the n-th online episode is stored, before its
        updates, and with the count stored so far before the online loop (MOTO sets α and β
        here)."""

    def _online_episode_stored(self, episode: int) -> None:
        """Set the acting average's rate for ``episode`` stored online episodes, then call the
        subclass's hook."""
        if self.acting is not None:
            rate = self.acting_settings.rate_after(episode)
            self.acting.multi_avg_fn = get_ema_multi_avg_fn(1.0 - rate)
        self.on_online_episode(episode)

    def policy(self, explore: bool) -> Policy:
        """The policy on the acting average's weights once it has averaged an update (see
        :class:`ActingSettings`), on the live weights otherwise; with the lookahead when one
        is set, and for greedy acting only if ``lookahead_evaluates``."""
        averaged = self.acting is not None and int(self.acting.n_averaged) > 0
        acting = self.acting.module if averaged else self._live
        searches = explore or self.acting_settings.lookahead_evaluates
        return LatentPolicy(
            acting["world_model"],
            acting["actor"],
            self.obs_key.removeprefix("obs."),
            explore,
            self.context.device,
            self.lookahead if searches else None,
            self.agent.policy_reads_observation,
            self.acting_settings.exploration_std_scale,
        )

    def _offline_replay(self) -> tuple[SequenceReplay, Episode]:
        """The offline episodes in a replay, and the first of them."""
        episodes = self.observed.offline_episodes(self.data_settings)
        replay = SequenceReplay.from_episodes(
            episodes,
            self.replay_settings.sequence_length,
            seed=self.context.seed,
            cross_episodes=self.replay_settings.cross_episode_windows,
        )
        self.offline_episodes = episodes
        return replay, episodes[0]

    def checkpoint_state(self) -> dict[str, Any]:
        state = {
            "agent": self.agent.state_dict(),
            "optimisers": self.agent.optimiser_state(),
            "config": OmegaConf.to_container(self.context.cfg, resolve=True),
        }
        if self.acting is not None:
            state["acting"] = self.acting.state_dict()
        return state

    def load(self, init: str) -> dict[str, Any]:
        """Load the agent's weights and optimiser states from a checkpoint (exactly: every
        parameter must match in name and shape); returns the checkpoint."""
        path = checkpoint_path(init)
        checkpoint = load_checkpoint(path)
        try:
            self.restore(checkpoint)
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserInputError(
                f"checkpoint {path} does not fit this agent (was it saved with other encoder, "
                f"world_model or algo sizes?): {str(error).splitlines()[0]}"
            ) from None
        return checkpoint

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load the agent's weights and optimiser states from checkpoint ``state``, and the
        acting average where both have one (a checkpoint without it starts the average at the
        loaded weights with the first update)."""
        self.agent.load_state_dict(state["agent"])
        self.agent.load_optimiser_state(state["optimisers"])
        if self.acting is not None and "acting" in state:
            self.acting.load_state_dict(state["acting"])

    def run(self) -> dict[str, float]:
        context = self.context
        starts_pretrained = False
        if context.cfg.init is not None:
            starts_pretrained = pretrained_offline_only(self.load(context.cfg.init))
        offline_replay, first_episode = self._offline_replay()
        normaliser = self.agent.world_model.normaliser
        if normaliser is not None and context.cfg.init is None:
            normaliser.fit_episodes(self.offline_episodes, self.obs_key)
        runner = PhaseRunner.for_run(self, self.env_factory, context, starts_pretrained)
        try:
            results = runner.run(
                PHASES[context.cfg.phase],
                offline_replay,
                self.offline_settings,
                self.online_settings.eval_episodes,
                self.online_settings,
                self.replay_settings.online_capacity_steps,
                on_episode=self._online_episode_stored,
            )
        except TerminationRequested:
            # A run stopped on a deadline (SIGTERM) still shows what its model imagines.
            self._save_imagination(first_episode)
            raise
        self._save_imagination(first_episode)
        return results

    def _save_imagination(self, episode: Mapping[str, np.ndarray]) -> None:
        """``imagination.gif`` (pixel runs): an offline episode (left) beside the model's
        open-loop prediction of it from its first 5 frames and its actions (right)."""
        if self.obs_key != "obs.pixels":
            return
        frames = open_loop_frames(
            self.agent.world_model, episode["obs.pixels"], episode["action"], context=5
        )
        save_video(frames, self.context.run_dir / "imagination.gif")
