"""Success against how far a MetaWorld task's goal lies to the side of its object: for each run
folder given, episodes are binned by ``|goal x − object x|`` at reset (MetaWorld v3 state
observations: the first object's position at entries 4–6, the goal at the last three), and the
successes counted in each bin, for the run's offline demonstrations, its stored online training
episodes (``online_episodes/``) and, with ``--evaluate``, the actor's greedy policy on the run's
own evaluation starts (each listed with its offset and the highest the object was lifted),
and with ``--explore-scales`` also exploring, the actor's σ times each scale, ``--draws``
episodes a start (``algo.exploration_std_scale``: which starts exploration reaches), and with
``--offsets-for-seeds`` the offsets of the evaluation starts that runs of other seeds play.

A policy cloned from few demonstrations may only succeed at the offsets they cover; training
episodes that never succeed at the larger ones give filtered cloning of online successes
(``algo.prior.online_successes``) nothing to learn them from (docs/moto_experiments.md,
"Shelf-place: the goal's lateral offset").

    python benchmarks/metaworld_goal_offset.py RUN [RUN ...] [--evaluate 10] \\
        [--explore-scales 1 3 5] [--draws 6] [--offsets-for-seeds 0 1] \\
        [--bins 0 0.04 0.08 0.12 0.2]
    # prints a table, writes benchmarks/results/metaworld_goal_offset.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from framework.data.collect import record_episode
from framework.data.format import load_dataset, observation_entries, succeeded
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.library.latent_policy import LatentPolicy
from framework.phases import EVAL_SEED_OFFSET, ONLINE_EPISODES
from framework.runner import load_trained

OBJECT_X, OBJECT_Z, GOAL_X = 4, 6, -3  # MetaWorld v3 state layout


def lateral_offset(first_obs: np.ndarray) -> float:
    """``|goal x − object x|`` in metres, from an episode's first state observation."""
    return float(abs(first_obs[GOAL_X] - first_obs[OBJECT_X]))


def successes_by_offset(
    offsets: Sequence[float], successes: Sequence[bool], bins: Sequence[float]
) -> list[dict[str, float]]:
    """Per bin ``[lo, hi)``: episodes and successes among them."""
    offsets_array, successes_array = np.asarray(offsets), np.asarray(successes, dtype=bool)
    rows = []
    for low, high in pairwise(bins):
        inside = (offsets_array >= low) & (offsets_array < high)
        rows.append(
            {
                "low": low,
                "high": high,
                "episodes": int(inside.sum()),
                "successes": int(successes_array[inside].sum()),
            }
        )
    return rows


def evaluation_starts(
    algorithm: LatentOfflineToOnline, starts: int, explore_std_scale: float | None, draws: int
) -> list[dict[str, float]]:
    """The actor on the run's first ``starts`` evaluation starts, greedily (``explore_std_scale``
    None, one draw) or exploring with its σ times ``explore_std_scale`` (``draws`` episodes a
    start, torch seeded per draw): per start the offset, the episodes that succeeded and the
    highest object height reached."""
    agent, cfg = algorithm.agent, algorithm.context.cfg
    explore = explore_std_scale is not None
    policy = LatentPolicy(
        agent.world_model,
        agent.actor,
        algorithm.obs_key.removeprefix("obs."),
        explore,
        algorithm.context.device,
        None,
        agent.policy_reads_observation,
        explore_std_scale if explore else 1.0,
    )
    # MetaWorld's MT1 env draws each reset's task from a generator seeded when the env is made,
    # so the run's evaluation starts are one env's successive resets (as framework.evaluation
    # plays them), replayed in order for every draw.
    base = cfg.seed + EVAL_SEED_OFFSET
    rows = [
        {"start": start, "successes": 0, "episodes": 0, "highest_object_z": -np.inf}
        for start in range(starts)
    ]
    for draw in range(draws if explore else 1):
        env = algorithm.env_factory.make(base)
        for row in rows:
            torch.manual_seed(1000 * draw + row["start"])
            policy.reset()
            episode = record_episode(env, lambda obs, _: policy.act(obs), base + row["start"])
            states = episode["obs.state"]
            row["offset"] = lateral_offset(states[0])
            row["successes"] += succeeded(episode)
            row["episodes"] += 1
            row["highest_object_z"] = max(row["highest_object_z"], float(states[:, OBJECT_Z].max()))
    return rows


def evaluation_offsets(algorithm: LatentOfflineToOnline, seed: int, starts: int) -> list[float]:
    """The offsets of the first ``starts`` evaluation starts of a run with ``seed`` on the same
    env (resets only, nothing acts), replayed as :func:`evaluation_starts` replays them."""
    base = seed + EVAL_SEED_OFFSET
    env = algorithm.env_factory.make(base)
    return [
        lateral_offset(observation_entries(env.reset(seed=base + start)[0])["obs.state"])
        for start in range(starts)
    ]


def _by_offset(starts: list[dict[str, float]], bins: Sequence[float]) -> list[dict[str, float]]:
    """:func:`successes_by_offset` over the episodes of :func:`evaluation_starts` (a start's
    ``successes`` of ``episodes`` counted as that many successful episodes and the rest not)."""
    offsets = [row["offset"] for row in starts for _ in range(row["episodes"])]
    successes = [index < row["successes"] for row in starts for index in range(row["episodes"])]
    return successes_by_offset(offsets, successes, bins)


def _line(name: str, rows: list[dict[str, float]]) -> str:
    cells = [f"{row['successes']:>3}/{row['episodes']:<3}" for row in rows]
    return f"{name:<28}" + "".join(f"{cell:>14}" for cell in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of a latent algorithm")
    parser.add_argument("--evaluate", type=int, default=0, help="evaluation starts to act on")
    parser.add_argument(
        "--explore-scales",
        type=float,
        nargs="*",
        default=[],
        help="also act exploring, the actor's σ times each of these",
    )
    parser.add_argument("--draws", type=int, default=6, help="exploring episodes a start")
    parser.add_argument(
        "--offsets-for-seeds",
        type=int,
        nargs="*",
        default=[],
        help="also list the offsets of the --evaluate starts that runs with these seeds play",
    )
    parser.add_argument("--bins", type=float, nargs="+", default=[0.0, 0.04, 0.08, 0.12, 0.2])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/metaworld_goal_offset.json")
    )
    args = parser.parse_args()
    report = {}
    header = [f"{low:.2f}-{high:.2f}" for low, high in pairwise(args.bins)]
    print(f"{'|goal x - object x| (m)':<28}" + "".join(f"{title:>14}" for title in header))
    for run_dir in args.runs:
        algorithm = load_trained(run_dir)
        if not isinstance(algorithm, LatentOfflineToOnline):
            raise SystemExit(f"{run_dir}: not a run of a latent offline-to-online algorithm")
        groups = {"offline": algorithm.observed.offline_episodes(algorithm.data_settings)}
        if (run_dir / ONLINE_EPISODES).exists():
            groups["online training"] = load_dataset(run_dir / ONLINE_EPISODES).episodes
        entry = report[str(run_dir)] = {}
        print(run_dir)
        for name, episodes in groups.items():
            offsets = [lateral_offset(episode["obs.state"][0]) for episode in episodes]
            rows = entry[name] = successes_by_offset(
                offsets, [succeeded(episode) for episode in episodes], args.bins
            )
            print(_line(f"  {name}", rows), flush=True)
        policies = {"greedy": None} | {f"σ × {scale:g}": scale for scale in args.explore_scales}
        if not args.evaluate:
            policies = {}
        for name, scale in policies.items():
            starts = entry[f"evaluation starts, {name}"] = evaluation_starts(
                algorithm, args.evaluate, scale, args.draws
            )
            print(_line(f"  evaluation, {name}", _by_offset(starts, args.bins)))
            for row in starts:
                print(
                    f"    start {row['start']}: offset {row['offset']:.3f}, successes "
                    f"{row['successes']}/{row['episodes']}, highest object z "
                    f"{row['highest_object_z']:.3f}"
                )
        for seed in args.offsets_for_seeds:
            offsets = entry[f"evaluation offsets, seed {seed}"] = evaluation_offsets(
                algorithm, seed, args.evaluate
            )
            print(f"  evaluation starts of seed {seed}: " + " ".join(f"{x:.3f}" for x in offsets))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
