"""PETS: probabilistic ensembles with trajectory sampling (Chua et al., NeurIPS 2018).

Every environment step, the planner searches action sequences ``a_1..a_H`` that maximise

    J(a_1..a_H) = mean over particles p of  sum_t  [ r_t(p) - alpha * u_t(p) ]

where each particle propagates the current state through the dynamics ensemble with TS1
(a random member draws each next state), ``r_t`` is the env's known reward function or the
ensemble's learned reward, ``u_t`` is the configured uncertainty estimator on all members'
predictions, and rewards after a predicted termination count zero. The first action is taken.
The ensemble is refitted on all transitions every ``train_every_steps`` env steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import trange

from framework.checkpoint import save_checkpoint
from framework.errors import UserInputError
from framework.interfaces import Algorithm, RunContext, TransitionEnsemble
from framework.interfaces.planner import SequenceObjective


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
        self.obs_dim, self.action_dim = obs_space.shape[0], action_space.shape[0]
        self.reward_fn = None if self.settings.learn_reward else self.env_factory.reward_fn
        self.model = registry.build(
            "dynamics",
            cfg.dynamics,
            obs_dim=self.obs_dim,
            action_dim=self.action_dim,
            learns_reward=self.reward_fn is None,
            device=str(context.device),
            seed=context.seed,
        )
        if not isinstance(self.model, TransitionEnsemble):
            raise UserInputError(
                f"PETS trains its model on transitions: dynamics {cfg.dynamics.name!r} is a "
                f"{type(self.model).__name__}, not a TransitionEnsemble"
            )
        self.uncertainty = registry.build("uncertainty", cfg.uncertainty)
        self.planner = registry.build(
            "planner",
            cfg.planner,
            action_low=action_space.low,
            action_high=action_space.high,
            horizon=self.settings.horizon,
            device=str(context.device),
        )
        self.generator = torch.Generator(device=context.device).manual_seed(context.seed)
        self.transitions = _Transitions()
        self.planned_steps = 0

    # ---------------------------------------------------------------- planning objective
    def _sequence_returns(self, obs: np.ndarray) -> SequenceObjective:
        """The objective ``J`` for sequences starting in ``obs``; see the module docstring."""
        start = torch.as_tensor(obs, dtype=torch.float32, device=self.context.device)
        particles, alpha = self.settings.particles, float(self.settings.alpha)
        members = self.model.ensemble_size

        def returns(actions: torch.Tensor) -> torch.Tensor:
            population, horizon, _ = actions.shape
            n = population * particles
            state = start.expand(n, -1)
            total = torch.zeros(n, device=start.device)
            terminated = torch.zeros(n, dtype=torch.bool, device=start.device)
            for t in range(horizon):
                action = actions[:, t].repeat_interleave(particles, dim=0)
                if alpha > 0 or n % members:
                    # Every member predicts every particle: the uncertainty needs them all.
                    prediction = self.model.predict(state, action)
                    draws = self.model.sample(prediction, self.generator)
                    chosen = torch.randint(
                        members, (n,), generator=self.generator, device=start.device
                    )
                    outcome = draws[chosen, torch.arange(n, device=start.device)]
                    penalty = alpha * self.uncertainty(prediction) if alpha > 0 else 0.0
                else:
                    # TS1 at 1/members of the cost: shuffle particles into equal member slices.
                    order = torch.randperm(n, generator=self.generator, device=start.device)
                    prediction = self.model.predict(
                        state[order].view(members, n // members, -1),
                        action[order].view(members, n // members, -1),
                    )
                    outcome = torch.empty(n, prediction.mean.shape[-1], device=start.device)
                    outcome[order] = self.model.sample(prediction, self.generator).flatten(0, 1)
                    penalty = 0.0
                next_state = outcome[:, : self.obs_dim]
                if self.reward_fn is None:
                    reward = outcome[:, self.obs_dim]
                else:
                    reward = self.reward_fn(action, next_state).squeeze(-1)
                reward = (reward - penalty).masked_fill(terminated, 0.0)
                total += reward
                if self.env_factory.termination_fn is not None:
                    terminated |= self.env_factory.termination_fn(action, next_state).squeeze(-1)
                state = next_state
            scores = total.view(population, particles).mean(dim=1)
            return torch.nan_to_num(scores, nan=-1e10)

        return returns

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Plan from ``obs`` and return the first action of the best sequence."""
        with torch.no_grad():
            return self.planner.plan(self._sequence_returns(obs))[0]

    # ---------------------------------------------------------------- training loop
    def _episode(self, random_actions: bool) -> tuple[float, int, float]:
        """Run one episode, refitting the model on schedule; returns (return, length, loss)."""
        obs, _ = self.env.reset()
        self.planner.reset()
        episode_return, length, loss, done = 0.0, 0, float("nan"), False
        while not done:
            if random_actions:
                action = self.env.action_space.sample()
            else:
                if self.planned_steps % self.settings.train_every_steps == 0:
                    loss = self.model.fit(*self.transitions.arrays())[-1]
                action = self.act(obs)
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
                    "random": float(random_actions),
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
