"""MBPO (Janner et al., NeurIPS 2019): SAC on short rollouts of a learned probabilistic
ensemble, here pre-trained on the offline data and then fine-tuned online.

The ensemble (the ``dynamics`` group, a :class:`~framework.interfaces.TransitionEnsemble`)
learns ``(s, a) → (s', r)`` from every real transition: the offline episodes before the
offline phase, and those plus the online episodes stored so far after every
``model_fit_every`` online episodes. Every ``rollout_every`` updates, the real states of the
update's batch start ``rollout_length``-step rollouts: ``a ~ π(·|s)``, then ``(s', r)`` drawn
from one member picked at random per sample (TS-1), the reward lowered to
``r − penalty · u(s, a)`` by the ``uncertainty`` group's ``u`` (MOPO; ``none``: MBPO). The
imagined transitions fill a FIFO model buffer. Each SAC update (mbrl-lib's vendored
pytorch_sac_pranz24) takes ``real_ratio`` of its batch from the real windows and the rest from
the model buffer. Real transitions are replay windows of 2 rows: row 0 holds ``s``, row 1
``a``, ``r``, ``s'`` and whether ``s'`` is terminal.

A resumed run restores the weights and optimisers but refills the model buffer from the
restored model, so it continues close to, not exactly as, an uninterrupted run; ``model.csv``
is rolled back to the checkpoint like the other logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from mbrl.third_party.pytorch_sac_pranz24 import SAC
from mbrl.third_party.pytorch_sac_pranz24.model import GaussianPolicy
from mbrl.types import TransitionBatch
from mbrl.util.replay_buffer import ReplayBuffer

from framework.checkpoint import restore_optimiser
from framework.data import load_dataset
from framework.data.format import Episode
from framework.data.offline import DataSettings
from framework.errors import UserInputError
from framework.interfaces import Algorithm, Policy, RunContext
from framework.library.observed_env import observed_env
from framework.library.transition_models import build_transition_ensemble
from framework.phases import (
    ONLINE_EPISODES,
    OfflineSettings,
    OnlineSettings,
    PhaseRunner,
    reject_phase_options,
)
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings


@dataclass(frozen=True)
class MBPOSettings:
    """SAC's constants and network width (``alpha``: the initial entropy temperature, tuned
    towards ``target_entropy``, None: ``−action_dim``, when ``automatic_entropy_tuning``), the
    rollouts, the real share of SAC batches, the model buffer's capacity (transitions), the
    model's refit schedule (online episodes) and the online replay's capacity (steps)."""

    gamma: float = 0.99
    tau: float = 0.005
    alpha: float = 0.2
    automatic_entropy_tuning: bool = True
    target_entropy: float | None = None
    hidden_dim: int = 256
    lr: float = 3e-4
    rollout_length: int = 1
    rollout_every: int = 5
    penalty: float = 1.0
    real_ratio: float = 0.05
    model_capacity: int = 200_000
    model_fit_every: int = 1
    online_capacity_steps: int = 1_000_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.real_ratio <= 1.0:
            raise UserInputError(f"algo.mbpo.real_ratio must lie in [0, 1]; got {self.real_ratio}")
        counts = (
            self.rollout_length,
            self.rollout_every,
            self.model_capacity,
            self.model_fit_every,
        )
        if min(counts) < 1:
            raise UserInputError(
                "algo.mbpo.rollout_length, rollout_every, model_capacity and model_fit_every "
                f"must be positive; got {counts}"
            )


def transitions(episodes: Sequence[Episode], obs_key: str) -> tuple[np.ndarray, ...]:
    """``(obs, action, next_obs, reward)`` of every step of ``episodes``: ``(n, S)``,
    ``(n, A)``, ``(n, S)``, ``(n,)``."""
    steps = [(e[obs_key][:-1], e["action"], e[obs_key][1:], e["reward"]) for e in episodes]
    return tuple(np.concatenate(column) for column in zip(*steps, strict=True))


class _FixedBatch:
    """pranz24's ``SAC.update_parameters`` samples its batch from a buffer it is handed; this
    one hands it the batch MBPO has already mixed."""

    def __init__(self, batch: TransitionBatch) -> None:
        self.batch = batch

    def sample(self, batch_size: int) -> TransitionBatch:
        return self.batch


class SACPolicy(Policy):
    """Acts with SAC's actor: a tanh-Gaussian sample when exploring, else its mean."""

    def __init__(self, actor: GaussianPolicy, explore: bool) -> None:
        self.actor, self.explore = actor, explore

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        device = self.actor.action_scale.device
        state = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)[None]
        sample, _, mean = self.actor.sample(state)
        return (sample if self.explore else mean)[0].cpu().numpy()


class MBPO(Algorithm):
    """MBPO on the offline data, then ``algo.online.episodes`` online (0: offline only); see
    the module docstring. Results: ``offline_success``, ``final_success``, ``best_success``,
    ``online_episodes`` (with an online phase), ``model_loss`` (the last fit's last epoch)."""

    resumable = True

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg, registry = context.cfg, context.registry
        reject_phase_options(cfg)
        if cfg.encoder.name != "identity":
            raise UserInputError(
                "MBPO's model and SAC read the raw state vector: use encoder=identity, not "
                f"encoder={cfg.encoder.name}"
            )
        self.settings = typed_settings(MBPOSettings, cfg.algo.mbpo, "algo.mbpo")
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.offline_settings = typed_settings(OfflineSettings, cfg.algo.offline, "algo.offline")
        self.online_settings = typed_settings(OnlineSettings, cfg.algo.online, "algo.online")
        self.observed = observed_env(registry, cfg, context.seed)
        (obs_dim,), action_dim = self.observed.obs_shape, self.observed.action_dim
        self.model = build_transition_ensemble(
            context, obs_dim, action_dim, learns_reward=True, learner="MBPO"
        )
        self.uncertainty = registry.build("uncertainty", cfg.uncertainty)
        self.sac = self._build_sac(obs_dim, str(context.device))
        self.model_buffer = ReplayBuffer(
            self.settings.model_capacity,
            (obs_dim,),
            (action_dim,),
            rng=np.random.default_rng(context.seed),
        )
        self.offline_episodes: list[Episode] = []
        self._generator = torch.Generator(device=context.device).manual_seed(context.seed)
        self._updates, self._fitted_episodes = 0, 0
        self._model_loss = float("nan")

    def _build_sac(self, obs_dim: int, device: str) -> SAC:
        settings = self.settings
        env = self.observed.factory.make(self.context.seed)  # for its action bounds
        action_space = env.action_space
        env.close()
        args = SimpleNamespace(
            gamma=settings.gamma,
            tau=settings.tau,
            alpha=settings.alpha,
            policy="Gaussian",
            target_update_interval=1,
            automatic_entropy_tuning=settings.automatic_entropy_tuning,
            target_entropy=settings.target_entropy,
            hidden_size=settings.hidden_dim,
            device=device,
            lr=settings.lr,
        )
        sac = SAC(obs_dim, action_space, args)
        if settings.automatic_entropy_tuning:
            # pranz24's SAC starts log α at 0 whatever args.alpha says (α jumps to 1 at the
            # first update); start it at the configured α instead.
            sac.log_alpha.data.fill_(math.log(settings.alpha))
        return sac

    def fit_model(self, online_episodes: int, step: int) -> None:
        """Fit the ensemble on the offline episodes and the first ``online_episodes`` online
        ones stored in the run folder; log the fit to ``model.csv`` at env step ``step``."""
        episodes = list(self.offline_episodes)
        if online_episodes > 0:
            episodes += load_dataset(self.context.run_dir / ONLINE_EPISODES).episodes
        data = transitions(episodes, self.observed.obs_key)
        losses = self.model.fit(*data)
        self._model_loss, self._fitted_episodes = losses[-1], online_episodes
        values = {"transitions": len(data[0]), "first_loss": losses[0], "loss": losses[-1]}
        self.context.logger.log("model", step, values)

    @torch.no_grad()
    def rollout(self, start: np.ndarray) -> None:
        """``rollout_length`` steps of the model from the states ``start`` ``(N, S)`` into the
        model buffer; a rollout stops where the env's ``termination_fn`` ends it."""
        settings, model = self.settings, self.model
        termination_fn = self.observed.factory.termination_fn
        obs = torch.as_tensor(start, dtype=torch.float32, device=self.context.device)
        for _ in range(settings.rollout_length):
            action, _, _ = self.sac.policy.sample(obs)
            prediction = model.predict(obs, action)
            draws = model.sample(prediction, self._generator)  # (ensemble, N, S + 1)
            rows = torch.arange(len(obs), device=obs.device)
            member = torch.randint(
                model.ensemble_size, (len(obs),), generator=self._generator, device=obs.device
            )
            next_obs, reward = draws[member, rows, :-1], draws[member, rows, -1]
            reward = reward - settings.penalty * self.uncertainty(prediction)
            terminated = torch.zeros(len(obs), dtype=torch.bool, device=obs.device)
            if termination_fn is not None:
                terminated = termination_fn(action, next_obs)[:, 0].bool()
            columns = (obs, action, next_obs, reward, terminated, torch.zeros_like(terminated))
            self.model_buffer.add_batch(*(column.cpu().numpy() for column in columns))
            obs = next_obs[~terminated]
            if len(obs) == 0:
                break

    def _mixed_batch(self, batch: Mapping[str, np.ndarray]) -> TransitionBatch:
        """``round(real_ratio · N)`` of the ``N`` real windows, chosen at random (a mixed
        replay puts its online windows first), and model transitions for the rest."""
        size = len(batch["action"])
        count = round(self.settings.real_ratio * size)
        real = torch.randperm(size, generator=self._generator)[:count].numpy()
        obs = batch[self.observed.obs_key]
        parts = [
            (
                obs[real, 0],
                batch["action"][real, 1],
                obs[real, 1],
                batch["reward"][real, 1],
                batch["terminated"][real, 1],
            )
        ]
        if count < size:
            parts.append(self.model_buffer.sample(size - count).astuple()[:5])
        columns = [np.concatenate(column).astype(np.float32) for column in zip(*parts, strict=True)]
        return TransitionBatch(*columns, np.zeros(size, np.float32))

    # The SequenceLearner protocol (framework.phases).
    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        # An empty model buffer: the first update, or the first after a resume.
        if self._updates % self.settings.rollout_every == 0 or len(self.model_buffer) == 0:
            self.rollout(batch[self.observed.obs_key][:, 0])
        mixed = self._mixed_batch(batch)
        q1_loss, q2_loss, actor_loss, _, alpha = self.sac.update_parameters(
            _FixedBatch(mixed), len(mixed), self._updates, reverse_mask=True
        )
        self._updates += 1
        return {
            "q_loss": q1_loss + q2_loss,
            "actor_loss": actor_loss,
            "alpha": alpha,
            "batch_reward": float(mixed.rewards.mean()),
            "model_total": self._model_loss,
            "model_buffer": float(len(self.model_buffer)),
        }

    def policy(self, explore: bool) -> Policy:
        return SACPolicy(self.sac.policy, explore)

    def _optimisers(self) -> dict[str, torch.optim.Optimizer]:
        sac = self.sac
        optimisers = {
            "model": self.model.trainer.optimizer,
            "critic": sac.critic_optim,
            "actor": sac.policy_optim,
        }
        if sac.automatic_entropy_tuning:
            optimisers["alpha"] = sac.alpha_optim
        return optimisers

    def checkpoint_state(self) -> dict[str, Any]:
        sac = self.sac
        return {
            "model": self.model.state_dict(),
            "model_loss": self._model_loss,
            "actor": sac.policy.state_dict(),
            "critic": sac.critic.state_dict(),
            "critic_target": sac.critic_target.state_dict(),
            "log_alpha": sac.log_alpha.detach().clone() if sac.automatic_entropy_tuning else None,
            "sac_updates": self._updates,
            "fitted_episodes": self._fitted_episodes,
            "optimisers": {name: opt.state_dict() for name, opt in self._optimisers().items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        sac = self.sac
        self.model.load_state_dict(state["model"])
        for name, network in [
            ("actor", sac.policy),
            ("critic", sac.critic),
            ("critic_target", sac.critic_target),
        ]:
            network.load_state_dict(state[name])
        if sac.automatic_entropy_tuning:
            sac.log_alpha.data.copy_(state["log_alpha"])
            sac.alpha = sac.log_alpha.exp()
        for name, optimiser in self._optimisers().items():
            restore_optimiser(optimiser, state["optimisers"][name])
        self._updates, self._model_loss = state["sac_updates"], state["model_loss"]
        self._fitted_episodes = state["fitted_episodes"]

    def run(self) -> dict[str, float]:
        context, settings = self.context, self.settings
        self.offline_episodes = self.observed.offline_episodes(self.data_settings)
        offline = SequenceReplay.from_episodes(self.offline_episodes, 2, seed=context.seed)
        runner = PhaseRunner.for_run(self, self.observed.factory, context)
        if context.cfg.get("resume") is None:
            self.fit_model(online_episodes=0, step=0)
        else:
            # A fit logged after the checkpoint was lost with the weights it made: drop its row.
            checkpoint_steps = runner.progress.online_steps
            context.logger.keep_rows("model", lambda _, row: int(row["step"]) <= checkpoint_steps)

        def refit(online_episodes: int) -> None:
            new = online_episodes != self._fitted_episodes
            if new and online_episodes % settings.model_fit_every == 0:
                self.fit_model(online_episodes, runner.progress.online_steps)

        phases = ("offline", "online") if self.online_settings.episodes > 0 else ("offline",)
        results = runner.run(
            phases,
            offline,
            self.offline_settings,
            self.online_settings.eval_episodes,
            self.online_settings,
            settings.online_capacity_steps,
            on_episode=refit,
        )
        return {**results, "model_loss": self._model_loss}
