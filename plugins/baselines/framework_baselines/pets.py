"""PETS: probabilistic ensembles with trajectory sampling (Chua et al., NeurIPS 2018).

A loop around the core's parts: random episodes seed the data; then every step the
:class:`~framework.library.mpc.EnsembleMPC` policy plans with the configured planner on the
configured dynamics ensemble, with the reward penalised by ``alpha`` times the configured
uncertainty; the ensemble is refitted on all transitions every ``train_every_steps`` steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import trange

from framework.checkpoint import save_checkpoint
from framework.errors import UserInputError
from framework.interfaces import Algorithm, RunContext
from framework.library.mpc import EnsembleMPC
from framework.library.transition_models import build_transition_ensemble
from framework.phases import reject_phase_options


@dataclass
class _Transitions:
    """Every transition seen so far, grown episode by episode."""

    obs: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    next_obs: list[np.ndarray] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: float) -> None:
        self.obs.append(obs)
        self.action.append(action)
        self.next_obs.append(next_obs)
        self.reward.append(reward)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.obs),
            np.asarray(self.action),
            np.asarray(self.next_obs),
            np.asarray(self.reward),
        )


class PETS(Algorithm):
    """Model-predictive control on a learned probabilistic ensemble; see the module docstring."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg, registry = context.cfg, context.registry
        reject_phase_options(cfg)
        if registry.get("encoder", cfg.encoder.name).observation != "state":
            raise UserInputError(
                f"PETS plans on the env's state vectors; encoder {cfg.encoder.name!r} reads "
                "pixels: drop the encoder override (model-based from pixels: +algo=moto or dreamer)"
            )
        self.settings = cfg.algo
        self.env_factory = registry.build("env", cfg.env)
        self.env = self.env_factory.make(context.seed)
        obs_space, action_space = self.env.observation_space, self.env.action_space
        if len(obs_space.shape) != 1 or len(action_space.shape) != 1:
            raise UserInputError(
                "PETS plans on flat state vectors and continuous actions; env "
                f"{cfg.env.get('id')!r} gives observations {obs_space.shape} and actions "
                f"{action_space}"
            )
        reward_fn = None if self.settings.learn_reward else self.env_factory.reward_fn
        obs_dim, action_dim = obs_space.shape[0], action_space.shape[0]
        self.model = build_transition_ensemble(
            context, obs_dim, action_dim, learns_reward=reward_fn is None, learner="PETS"
        )
        planner = registry.build(
            "planner",
            cfg.planner,
            action_low=action_space.low,
            action_high=action_space.high,
            horizon=self.settings.horizon,
            device=str(context.device),
        )
        self.policy = EnsembleMPC(
            self.model,
            planner,
            registry.build("uncertainty", cfg.uncertainty),
            state_dim=obs_space.shape[0],
            particles=self.settings.particles,
            alpha=float(self.settings.alpha),
            reward_fn=reward_fn,
            termination_fn=self.env_factory.termination_fn,
            generator=torch.Generator(device=context.device).manual_seed(context.seed),
        )
        self.transitions = _Transitions()
        self.planned_steps = 0

    def _episode(self, random_actions: bool) -> tuple[float, int, float]:
        """Run one episode, refitting the model on schedule; returns (return, length, loss)."""
        obs, _ = self.env.reset()
        self.policy.reset()
        episode_return, length, loss, done = 0.0, 0, float("nan"), False
        while not done:
            if random_actions:
                action = self.env.action_space.sample()
            else:
                if self.planned_steps % self.settings.train_every_steps == 0:
                    loss = self.model.fit(*self.transitions.arrays())[-1]
                action = self.policy.act(obs)
                self.planned_steps += 1
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.transitions.add(obs, action, next_obs, float(reward))
            obs, done = next_obs, terminated or truncated
            episode_return += float(reward)
            length += 1
        return episode_return, length, loss

    def run(self) -> dict[str, float]:
        settings, logger = self.settings, self.context.logger
        returns: list[float] = []
        random_returns: list[float] = []
        start = time.perf_counter()
        bar = trange(settings.episodes, desc="PETS episodes", disable=not self.context.cfg.progress)
        episode = 0
        while episode < settings.episodes:
            random_actions = len(self.transitions.obs) < settings.initial_random_steps
            episode_return, length, loss = self._episode(random_actions)
            (random_returns if random_actions else returns).append(episode_return)
            logger.log(
                "episodes",
                step=len(self.transitions.obs),
                values={
                    "episode": len(returns) + len(random_returns) - 1,
                    "return": episode_return,
                    "length": length,
                    "random": int(random_actions),
                    "model_loss": loss,
                    "wall_time": time.perf_counter() - start,
                },
            )
            if random_actions:
                continue
            episode += 1
            bar.update()
            bar.set_postfix(ret=f"{episode_return:.1f}")
            if episode % settings.checkpoint_every == 0 or episode == settings.episodes:
                self._save(episode)
        bar.close()
        return {
            "final_return": returns[-1],
            "best_return": max(returns),
            "random_return": float(np.mean(random_returns)) if random_returns else float("nan"),
            "env_steps": float(len(self.transitions.obs)),
        }

    def _save(self, episode: int) -> None:
        save_checkpoint(
            self.context.run_dir / "checkpoint.pt",
            {"episode": episode, "model": self.model.state_dict()},
        )
