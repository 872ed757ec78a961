"""Offline pre-training and online fine-tuning loops for any learner that trains on sequence
batches and acts through a :class:`~framework.interfaces.Policy`.

Algorithms compose these phases from their config: which phases run, with how many updates,
which mix of offline and online data, how often to evaluate. The loops log to the run's CSVs
(``offline.csv`` every ``log_every`` updates; ``train_episodes.csv`` per online episode;
``evaluation.csv`` as ``step,episode,success,seed,...``, the success rate after
``episode`` online episodes and ``step`` online env steps) and write the checkpoint file
(:meth:`PhaseRunner.save`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from omegaconf import DictConfig
from tqdm import trange

from framework.checkpoint import save_checkpoint
from framework.data import DatasetWriter
from framework.data.collect import record_episode
from framework.errors import UserInputError
from framework.evaluation import evaluate
from framework.interfaces import EnvFactory, Policy, RunContext
from framework.metrics import RunLogger
from framework.replay import MixedReplay, SequenceReplay

#: A run's checkpoint file, in its run folder.
CHECKPOINT = "checkpoint.pt"
#: The folder of a run's online episodes (dataset format).
ONLINE_EPISODES = "online_episodes"
#: Evaluation episodes start from seeds ``seed + EVAL_SEED_OFFSET + i``, apart from training's.
EVAL_SEED_OFFSET = 100_000


class SequenceLearner(Protocol):
    """What the phases train: updates on replay batches, and policies to act with."""

    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        """One update on a replay batch (``phase`` is ``offline`` or ``online``); metrics."""
        ...

    def policy(self, explore: bool) -> Policy:
        """A policy acting with the current parameters (sampling when ``explore``)."""
        ...

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the learner (weights, optimiser states, ...)."""
        ...


@dataclass
class PhaseProgress:
    """Counters that run across phases (and into checkpoints)."""

    updates: int = 0
    online_episodes: int = 0
    online_steps: int = 0


@dataclass(frozen=True)
class OfflineSettings:
    """``updates`` on batches of ``batch_size`` offline windows; metrics logged every
    ``log_every`` updates; checkpoint saved every ``checkpoint_every`` updates and at the end."""

    updates: int
    batch_size: int
    log_every: int = 100
    checkpoint_every: int = 1000


@dataclass(frozen=True)
class OnlineSettings:
    """``episodes`` online episodes, each followed by ``updates_per_episode`` updates on
    batches of ``batch_size`` windows, ``online_fraction`` of them from online episodes.
    ``eval_episodes`` evaluation episodes before the first online episode and after every
    ``eval_every`` of them (and the last); checkpoint saved after every ``checkpoint_every``
    episodes.
    ``prefill_episodes``: online episodes collected before any update (random actions are not
    used: the actor explores with its own entropy)."""

    episodes: int
    updates_per_episode: int
    batch_size: int
    online_fraction: float = 0.5
    eval_every: int = 5
    eval_episodes: int = 10
    checkpoint_every: int = 5
    prefill_episodes: int = 0


def reject_phase_options(cfg: DictConfig) -> None:
    """For algorithms without separate phases or warm starts: fail clearly when the run asks
    for ``phase`` other than ``all`` or an ``init`` checkpoint, rather than ignore them."""
    asked = [f"phase={cfg.phase}"] if cfg.phase != "all" else []
    asked += [f"init={cfg.init}"] if cfg.init is not None else []
    if asked:
        raise UserInputError(
            f"algo {cfg.algo.name!r} runs as one phase and starts from scratch: drop "
            f"{' and '.join(asked)} (offline-to-online algorithms such as moto, dreamer take them)"
        )


def online_replay(
    run_dir: Path, seed: int, capacity_steps: int, sequence_length: int
) -> SequenceReplay:
    """A replay for online episodes that first stores each whole episode on disk, in the
    dataset format under ``run_dir/online_episodes`` (a killed run keeps every finished one)."""
    writer = DatasetWriter(run_dir / ONLINE_EPISODES, {"seed": seed})
    return SequenceReplay(capacity_steps, sequence_length, seed=seed + 1, episode_sink=writer)


class PhaseRunner:
    """Runs phases of one learner and records them; see the module docstring."""

    def __init__(
        self,
        learner: SequenceLearner,
        env_factory: EnvFactory,
        logger: RunLogger,
        seed: int,
        checkpoint: Path,
        progress_bars: bool = True,
    ) -> None:
        self.learner, self.env_factory, self.logger = learner, env_factory, logger
        self.seed, self.checkpoint, self.progress_bars = seed, checkpoint, progress_bars
        self.progress = PhaseProgress()
        self._start = time.perf_counter()

    @classmethod
    def for_run(
        cls, learner: SequenceLearner, env_factory: EnvFactory, context: RunContext
    ) -> PhaseRunner:
        """A runner logging to the run's logger, seeded by its seed, checkpointing to
        ``run_dir/checkpoint.pt``, with progress bars as ``cfg.progress`` says."""
        return cls(
            learner,
            env_factory,
            context.logger,
            context.seed,
            context.run_dir / CHECKPOINT,
            context.cfg.progress,
        )

    def save(self, phase: str) -> None:
        """Write the checkpoint (atomically): the learner's
        :meth:`~SequenceLearner.checkpoint_state`, the counters and ``phase``."""
        progress = dataclasses.asdict(self.progress)
        state = self.learner.checkpoint_state()
        save_checkpoint(self.checkpoint, {"phase": phase, "progress": progress, **state})

    def evaluate(self, episodes: int, phase: str) -> float:
        """Success rate of the greedy policy over ``episodes`` episodes, logged to
        ``evaluation.csv``; returns it."""
        results = evaluate(
            self.learner.policy(explore=False),
            self.env_factory,
            episodes,
            self.seed + EVAL_SEED_OFFSET,
        )
        self.logger.log(
            "evaluation",
            step=self.progress.online_steps,
            values={
                "episode": self.progress.online_episodes,
                "success": results["success_rate"],
                "seed": self.seed,
                "mean_return": results["mean_return"],
                "updates": self.progress.updates,
                "offline": float(phase == "offline"),
                "wall_time": time.perf_counter() - self._start,
            },
        )
        return results["success_rate"]

    def offline(self, replay: SequenceReplay, settings: OfflineSettings) -> None:
        """Pre-train on ``replay`` (offline windows only)."""
        bar = trange(settings.updates, desc="offline updates", disable=not self.progress_bars)
        for index in bar:
            metrics = self.learner.train_step(replay.sample(settings.batch_size), "offline")
            self.progress.updates += 1
            if index % settings.log_every == 0 or index == settings.updates - 1:
                self.logger.log("offline", self.progress.updates, metrics)
                bar.set_postfix(model=f"{metrics.get('model_total', float('nan')):.3g}")
            if (index + 1) % settings.checkpoint_every == 0 and index + 1 < settings.updates:
                self.save("offline")
        self.save("offline")

    def online(
        self,
        offline: SequenceReplay,
        online: SequenceReplay,
        settings: OnlineSettings,
        evaluate_first: bool = True,
        on_episode: Callable[[int], None] | None = None,
    ) -> list[float]:
        """Fine-tune: collect episodes with the exploring policy into ``online`` (whose episode
        sink stores each one on disk first), update on mixed batches, evaluate on schedule.
        ``evaluate_first``: evaluate before the first online episode (skip it right after an
        offline phase that ended with an evaluation). ``on_episode(n)`` runs after the n-th
        online episode is stored, before its updates (e.g. a schedule). Returns the success
        rates of the evaluations, the last logged one before any online episode first."""
        mixed = MixedReplay(offline, online, settings.online_fraction)
        env = self.env_factory.make(self.seed)
        curve = [self.evaluate(settings.eval_episodes, "online")] if evaluate_first else []
        bar = trange(settings.episodes, desc="online episodes", disable=not self.progress_bars)
        try:
            for index in bar:
                policy = self.learner.policy(explore=True)
                policy.reset()
                episode = record_episode(env, lambda obs, _, policy=policy: policy.act(obs))
                online.add_episode(episode)
                self.progress.online_episodes += 1
                self.progress.online_steps += len(episode["action"])
                if on_episode is not None:
                    on_episode(self.progress.online_episodes)
                metrics: dict[str, float] = {}
                if self.progress.online_episodes > settings.prefill_episodes:
                    for _ in range(settings.updates_per_episode):
                        batch = mixed.sample(settings.batch_size)
                        metrics = self.learner.train_step(batch, "online")
                        self.progress.updates += 1
                self.logger.log(
                    "train_episodes",
                    self.progress.online_steps,
                    {
                        "episode": self.progress.online_episodes,
                        "return": float(np.sum(episode["reward"])),
                        "success": float(np.any(episode["success"])),
                        "updates": self.progress.updates,
                        "model_total": metrics.get("model_total", float("nan")),
                        "actor_loss": metrics.get("actor_loss", float("nan")),
                    },
                )
                last = index == settings.episodes - 1
                if (index + 1) % settings.eval_every == 0 or last:
                    curve.append(self.evaluate(settings.eval_episodes, "online"))
                    bar.set_postfix(success=f"{curve[-1]:.2f}")
                if (index + 1) % settings.checkpoint_every == 0 or last:
                    self.save("online")
        finally:
            env.close()
        return curve
