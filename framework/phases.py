"""Offline pre-training and online fine-tuning loops for any learner that trains on sequence
batches and acts through a :class:`~framework.interfaces.Policy`.

Algorithms compose these phases from their config: which phases run, with how many updates,
which mix of offline and online data, how often to evaluate. The loops log to the run's CSVs
(``offline.csv`` every ``log_every`` updates; ``train_episodes.csv`` per online episode;
``evaluation.csv`` as ``step,episode,success,seed,...``, the success rate after
``episode`` online episodes and ``step`` online env steps) and write the checkpoint file
(:meth:`PhaseRunner.save`).

Faults: checkpoints are written atomically on schedule; ``resume=<run folder>`` continues
from the last one (:meth:`PhaseRunner.restore`), keeping every online episode already on disk;
SIGTERM saves a checkpoint and stops cleanly; a NaN or infinite loss or gradient norm stops
the run before the next checkpoint could be overwritten.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm, trange

from framework.atomic import remove_leftovers
from framework.checkpoint import load_checkpoint, save_checkpoint
from framework.data import DatasetWriter, load_dataset, succeeded
from framework.data.collect import record_episode
from framework.errors import NonFiniteError, TerminationRequested, UserInputError
from framework.evaluation import evaluate
from framework.interfaces import EnvFactory, Policy, RunContext
from framework.metrics import RunLogger, read_log
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

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load the learner's part of a checkpoint, as :meth:`checkpoint_state` wrote it."""
        ...


@dataclass
class PhaseProgress:
    """Counters that run across phases and into checkpoints: updates, online episodes and env
    steps so far, the phase under way (``offline``, ``online`` or ``done``) and the success
    rates evaluated so far (the learning curve)."""

    updates: int = 0
    online_episodes: int = 0
    online_steps: int = 0
    phase: str = "offline"
    curve: list[float] = field(default_factory=list)


def pretrained_offline_only(checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` holds an agent evaluated after offline pre-training that has
    seen no online episode yet (a ``phase=offline`` run's, or one saved between the phases)."""
    progress = checkpoint.get("progress")
    return (
        progress is not None
        and progress["updates"] > 0
        and progress["online_episodes"] == 0
        and len(progress["curve"]) > 0
    )


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


def _evaluations_due(stored: int, settings: OnlineSettings) -> int:
    """Evaluations an online phase has made once ``stored`` episodes are in: the first, one
    every ``eval_every`` episodes and one after the last."""
    after_last = stored == settings.episodes and stored % settings.eval_every != 0
    return 1 + stored // settings.eval_every + int(after_last)


class PhaseRunner:
    """Runs the phases of one learner in a run folder and records them; see the module
    docstring. A runner made with ``resume`` (:meth:`for_run` when the config says
    ``resume=...``) continues from the folder's checkpoint. A runner made with
    ``starts_pretrained`` fine-tunes an agent loaded from an offline pre-training run (an
    ``init`` checkpoint): its first evaluation is that pre-trained agent's, so it is logged
    with ``offline=1`` and returned as ``offline_success``, as in a run of both phases."""

    def __init__(
        self,
        learner: SequenceLearner,
        env_factory: EnvFactory,
        logger: RunLogger,
        seed: int,
        run_dir: Path,
        progress_bars: bool = True,
        starts_pretrained: bool = False,
    ) -> None:
        self.learner, self.env_factory, self.logger = learner, env_factory, logger
        self.seed, self.run_dir, self.progress_bars = seed, Path(run_dir), progress_bars
        self.starts_pretrained = starts_pretrained
        self.checkpoint = self.run_dir / CHECKPOINT
        self.progress = PhaseProgress()
        self._replays: dict[str, SequenceReplay] = {}
        self._restored_replay_rng: dict[str, dict[str, Any]] = {}
        self._resumed = False
        self._terminate = False
        self._start = time.perf_counter()

    @classmethod
    def for_run(
        cls,
        learner: SequenceLearner,
        env_factory: EnvFactory,
        context: RunContext,
        starts_pretrained: bool = False,
    ) -> PhaseRunner:
        """A runner for the run in ``context``: its logger, seed, folder and progress-bar
        setting; restored from the folder's checkpoint when ``cfg.resume`` is set."""
        runner = cls(
            learner,
            env_factory,
            context.logger,
            context.seed,
            context.run_dir,
            context.cfg.progress,
            starts_pretrained,
        )
        if context.cfg.get("resume") is not None:
            runner.restore()
        return runner

    def save(self) -> None:
        """Write the checkpoint (atomically): the learner's
        :meth:`~SequenceLearner.checkpoint_state`, the progress, and every random generator's
        state (Python, NumPy, torch, the replays' samplers)."""
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "replays": {name: replay.rng_state for name, replay in self._replays.items()},
        }
        progress = dataclasses.asdict(self.progress)
        state = self.learner.checkpoint_state()
        save_checkpoint(
            self.checkpoint,
            {"phase": self.progress.phase, "progress": progress, "rng": rng, **state},
        )

    def restore(self) -> None:
        """Continue from the run folder's checkpoint: the learner's state, the progress, the
        random generators; the logs are rolled back to it (rows logged after it are dropped)
        and a checkpoint or log left half-written by a kill is removed."""
        remove_leftovers(self.run_dir)
        state = load_checkpoint(self.checkpoint)
        if "rng" not in state or "progress" not in state:
            raise UserInputError(
                f"{self.checkpoint} has no progress or random-generator states to resume from "
                "(written by an older framework version): start the run again"
            )
        self.learner.restore(state)
        self.progress = PhaseProgress(**state["progress"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        self._restored_replay_rng = state["rng"]["replays"]
        self._resumed = True
        updates, evaluations = self.progress.updates, len(self.progress.curve)
        self.logger.keep_rows("offline", lambda _, row: float(row["step"]) <= updates)
        self.logger.keep_rows("online", lambda _, row: float(row["step"]) <= updates)
        self.logger.keep_rows("evaluation", lambda index, _: index < evaluations)

    def run(
        self,
        phases: Sequence[str],
        offline: SequenceReplay,
        offline_settings: OfflineSettings,
        eval_episodes: int,
        online_settings: OnlineSettings | None = None,
        online_capacity_steps: int = 1_000_000,
        on_episode: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Run ``phases`` (``offline`` then ``online``, or either), from where a restored
        checkpoint left off. Offline: pre-train on ``offline``, checkpoint, evaluate over
        ``eval_episodes``. Online: :meth:`online` with ``online_settings``, its episodes kept
        in a replay of ``online_capacity_steps`` rows. Returns ``offline_success`` (with an
        offline phase, or when ``starts_pretrained``), ``final_success``, ``best_success``
        and, with an online phase, ``online_episodes``."""
        if not self._resumed:
            self.progress.phase = phases[0]
        elif self.progress.phase == "done" and self._online_budget_left(phases, online_settings):
            self.progress.phase = "online"  # resumed with a raised algo.online.episodes
        with self._stop_on_sigterm():
            if self.progress.phase == "offline":
                self.offline(offline, offline_settings)
                self.progress.curve.append(self.evaluate(eval_episodes, "offline"))
                self.progress.phase = "online" if "online" in phases else "done"
                self.save()
            if self.progress.phase == "online":
                if online_settings is None:
                    raise ValueError("an online phase needs online_settings")
                online = self.online_replay(
                    online_capacity_steps, offline.sequence_length, offline.cross_episodes
                )
                self.online(offline, online, online_settings, on_episode)
                self.progress.phase = "done"
                self.save()
        curve = self.progress.curve
        pretrained = "offline" in phases or self.starts_pretrained
        results = {"offline_success": curve[0]} if pretrained else {}
        results.update(final_success=curve[-1], best_success=max(curve))
        if "online" in phases:
            results["online_episodes"] = float(self.progress.online_episodes)
        return results

    def _online_budget_left(self, phases: Sequence[str], settings: OnlineSettings | None) -> bool:
        """Whether a run with ``phases`` has online episodes left under ``settings``."""
        return (
            "online" in phases
            and settings is not None
            and self.progress.online_episodes < settings.episodes
        )

    def online_replay(
        self, capacity_steps: int, sequence_length: int, cross_episodes: bool
    ) -> SequenceReplay:
        """A replay for online episodes, sampled as the offline one is (``sequence_length``,
        ``cross_episodes``), that first stores each whole episode on disk, in the dataset format
        under ``run_dir/online_episodes`` (a killed run keeps every finished one). Episodes
        already there (a resumed run) are loaded, and the progress counts them."""
        writer = DatasetWriter(self.run_dir / ONLINE_EPISODES, {"seed": self.seed})
        stored = load_dataset(writer.root).episodes if len(writer) else []
        self.progress.online_episodes = len(stored)
        self.progress.online_steps = sum(len(episode["action"]) for episode in stored)
        self.logger.keep_rows("train_episodes", lambda _, row: float(row["episode"]) <= len(stored))
        logged = self.run_dir / "train_episodes.csv"
        steps = np.cumsum([len(episode["action"]) for episode in stored], dtype=int)
        for index in range(len(read_log(logged)) if logged.is_file() else 0, len(stored)):
            # Stored just before a kill, not yet logged: its row comes from the stored episode.
            self._log_episode(stored[index], index + 1, int(steps[index]), {})
        replay = SequenceReplay.from_episodes(
            stored,
            sequence_length,
            self.seed + 1,
            capacity_steps,
            episode_sink=writer,
            cross_episodes=cross_episodes,
        )
        return self._track("online", replay)

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
                "offline": int(phase == "offline"),
                "wall_time": time.perf_counter() - self._start,
            },
        )
        return results["success_rate"]

    def offline(self, replay: SequenceReplay, settings: OfflineSettings) -> None:
        """Pre-train on ``replay`` (offline windows only) up to ``settings.updates`` updates,
        from the progress's count on."""
        replay = self._track("offline", replay)
        bar = self._bar(self.progress.updates, settings.updates, "offline updates")
        for index in bar:
            metrics = self._update(replay, settings.batch_size, "offline")
            if index % settings.log_every == 0 or index == settings.updates - 1:
                self.logger.log("offline", self.progress.updates, metrics)
                # The world model's loss where there is one (latent agents), else the
                # learner's first metric (BC's bc_nll, for instance).
                shown = "model_total" if "model_total" in metrics else next(iter(metrics), None)
                if shown is not None:
                    bar.set_postfix({shown: f"{metrics[shown]:.3g}"})
            if (index + 1) % settings.checkpoint_every == 0 and index + 1 < settings.updates:
                self.save()
            self._stop_if_asked()
        self.save()

    def online(
        self,
        offline: SequenceReplay,
        online: SequenceReplay,
        settings: OnlineSettings,
        on_episode: Callable[[int], None] | None = None,
    ) -> None:
        """Fine-tune: collect episodes with the exploring policy into ``online`` (whose episode
        sink stores each one on disk first), update on mixed batches, evaluate on schedule,
        appending to the progress's curve. Evaluates first when nothing was evaluated yet, or
        when an evaluation due at the resumed episode count is missing.
        ``on_episode(n)`` runs with the count of stored online episodes: once before the loop
        and after each new one, before its updates (e.g. a schedule). Episode ``n`` starts
        from ``env.reset(seed=seed + n)``, so a resumed run meets the same starts."""
        mixed = MixedReplay(self._track("offline", offline), online, settings.online_fraction)
        env = self.env_factory.make(self.seed)
        if len(self.progress.curve) < _evaluations_due(self.progress.online_episodes, settings):
            # Before the first episode; or resuming a run killed after storing an episode but
            # before checkpointing the evaluation due then: evaluate the weights restored.
            first = not self.progress.curve and self.starts_pretrained
            phase = "offline" if first else "online"
            self.progress.curve.append(self.evaluate(settings.eval_episodes, phase))
        if on_episode is not None:
            on_episode(self.progress.online_episodes)
        bar = self._bar(self.progress.online_episodes, settings.episodes, "online episodes")
        try:
            for index in bar:
                policy = self.learner.policy(explore=True)
                policy.reset()
                episode = record_episode(
                    env, lambda obs, _, policy=policy: policy.act(obs), seed=self.seed + index
                )
                online.add_episode(episode)
                self.progress.online_episodes += 1
                self.progress.online_steps += len(episode["action"])
                if on_episode is not None:
                    on_episode(self.progress.online_episodes)
                metrics: dict[str, float] = {}
                if self.progress.online_episodes > settings.prefill_episodes:
                    updates = [
                        self._update(mixed, settings.batch_size, "online")
                        for _ in range(settings.updates_per_episode)
                    ]
                    if updates:
                        metrics = updates[-1]
                        self._log_updates(updates, self.progress.online_episodes)
                progress = self.progress
                self._log_episode(episode, progress.online_episodes, progress.online_steps, metrics)
                last = index == settings.episodes - 1
                if (index + 1) % settings.eval_every == 0 or last:
                    self.progress.curve.append(self.evaluate(settings.eval_episodes, "online"))
                    bar.set_postfix(success=f"{self.progress.curve[-1]:.2f}")
                if (index + 1) % settings.checkpoint_every == 0 or last:
                    self.save()
                self._stop_if_asked()
        finally:
            env.close()

    def _log_episode(
        self, episode: Mapping[str, np.ndarray], number: int, step: int, metrics: dict[str, float]
    ) -> None:
        """``train_episodes.csv``'s row for online episode ``number``, ending at env step
        ``step``, followed by updates with last ``metrics`` (empty: none yet)."""
        self.logger.log(
            "train_episodes",
            step,
            {
                "episode": number,
                "return": float(np.sum(episode["reward"])),
                "success": float(succeeded(episode)),
                "updates": self.progress.updates,
                "model_total": metrics.get("model_total", float("nan")),
                "actor_loss": metrics.get("actor_loss", float("nan")),
            },
        )

    def _log_updates(self, updates: Sequence[Mapping[str, float]], episode: int) -> None:
        """``online.csv``'s row for the (one or more) ``updates`` after online episode
        ``episode``: each metric's mean over them (the imagined reward and uncertainty, α, β,
        the losses), at the update count, so fine-tuning can be plotted as pre-training is from
        ``offline.csv``."""
        means = {key: float(np.mean([update[key] for update in updates])) for key in updates[0]}
        self.logger.log("online", self.progress.updates, {"episode": episode, **means})

    def _bar(self, done: int, total: int, label: str) -> tqdm:
        """A progress bar over ``range(done, total)`` that shows ``done`` as already made."""
        return trange(
            done, total, initial=done, total=total, desc=label, disable=not self.progress_bars
        )

    def _track(self, name: str, replay: SequenceReplay) -> SequenceReplay:
        """Keep ``replay``'s sampler state in checkpoints, restored from one if resuming."""
        if name not in self._replays and name in self._restored_replay_rng:
            replay.rng_state = self._restored_replay_rng[name]
        self._replays[name] = replay
        return replay

    def _update(self, replay: SequenceReplay | MixedReplay, batch_size: int, phase: str) -> dict:
        """One learner update on a batch from ``replay``; stops the run (keeping the last
        checkpoint, which this update never reaches) if any metric is NaN or infinite."""
        metrics = self.learner.train_step(replay.sample(batch_size), phase)
        self.progress.updates += 1
        if bad := {key: value for key, value in metrics.items() if not math.isfinite(value)}:
            kept = (
                f"the last good checkpoint, {self.checkpoint}, is kept"
                if self.checkpoint.is_file()
                else "no checkpoint had been written yet"
            )
            raise NonFiniteError(
                f"{phase} update {self.progress.updates}: "
                + ", ".join(f"{key} = {value}" for key, value in bad.items())
                + f"; the run stopped and {kept}. Lower the learning rates or check the data "
                "for NaNs, then resume or start again."
            )
        return metrics

    @contextmanager
    def _stop_on_sigterm(self) -> Iterator[None]:
        """While the phases run, SIGTERM asks for a checkpoint and a clean stop (at the end of
        the current update or episode) instead of killing the run."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def ask_to_stop(signum: int, frame: object) -> None:
            self._terminate = True

        previous = signal.signal(signal.SIGTERM, ask_to_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _stop_if_asked(self) -> None:
        if self._terminate:
            self.save()
            raise TerminationRequested(
                f"stopped by SIGTERM after {self.progress.updates} updates and "
                f"{self.progress.online_episodes} online episodes; checkpoint saved. Continue "
                f"with: framework run resume={self.run_dir}"
            )
