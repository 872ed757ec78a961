"""How precisely does a state-based latent agent's posterior hold the positions a MetaWorld grasp
needs? Each run folder's episodes (its stored online episodes, or with ``--offline`` its offline
data) are filtered to posterior states as training does (:func:`episode_features`) and decoded
back to raw state units. Reported in centimetres, for the successful and the failed episodes
apart: the mean ``|decoded − real|`` of the hand (MetaWorld v3 state ``obs[0:3]``) and of the
first object (``obs[4:7]``) along x, y, z, and the mean and median error of the hand-to-object
vector in the plane, over the steps with the hand within ``--near`` metres of the object there.

A grasp misses by a few centimetres (docs/moto_experiments.md, "Where box-close fails"); a latent
state that holds the hand-to-object vector less precisely than that cannot tell the actor where
to close.

    python benchmarks/moto_posterior_precision.py runs/box-close_online ... [--offline] \\
        [--near 0.1] [--episodes 20]
    # prints the table, writes benchmarks/results/moto_posterior_precision.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from framework.data.format import load_dataset, succeeded
from framework.library.latent_agent import episode_features
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.phases import ONLINE_EPISODES
from framework.runner import load_trained

PARTS = {"hand": slice(0, 3), "obj": slice(4, 7)}  # MetaWorld v3 state layout
AXIS_COLUMNS = tuple(f"{part} {axis}" for part in PARTS for axis in "xyz")
COLUMNS = ("episodes", *AXIS_COLUMNS, "rel xy", "rel xy median")


@torch.no_grad()
def decoded_states(
    algorithm: LatentOfflineToOnline, episodes: list[dict[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The decoded posterior states ``(N, obs_dim)`` of every step an action was taken at in
    ``episodes``, in raw state units, and the real states ``(N, obs_dim)``."""
    model = algorithm.agent.world_model
    if model.normaliser is None or algorithm.obs_key != "obs.state":
        raise SystemExit("needs a state-based run with standardised observations")
    features, _ = episode_features(model, episodes, algorithm.obs_key, algorithm.context.device)
    decoded = model.decoder(features) * model.normaliser.std + model.normaliser.mean
    real = np.concatenate([np.asarray(e[algorithm.obs_key])[:-1] for e in episodes])
    return decoded.cpu().numpy(), real


def hand_to_object_xy(states: np.ndarray) -> np.ndarray:
    """The hand-to-object vectors ``(N, 2)`` in the plane of states ``(N, obs_dim)``."""
    return states[:, PARTS["hand"]][:, :2] - states[:, PARTS["obj"]][:, :2]


def precision(decoded: np.ndarray, real: np.ndarray, near: float) -> dict[str, float]:
    """:data:`COLUMNS` but ``episodes``, in centimetres (see the module docstring)."""
    error = np.abs(decoded - real) * 100
    real_xy = hand_to_object_xy(real)
    close = np.linalg.norm(real_xy, axis=1) < near
    rel_error = np.linalg.norm(hand_to_object_xy(decoded) - real_xy, axis=1)[close] * 100
    axis_errors = np.concatenate([error[:, part].mean(0) for part in PARTS.values()])
    row = dict(zip(AXIS_COLUMNS, map(float, axis_errors), strict=True))
    row["rel xy"] = float(rel_error.mean()) if close.any() else float("nan")
    row["rel xy median"] = float(np.median(rel_error)) if close.any() else float("nan")
    return row


def check(run_dir: Path, offline: bool, near: float, limit: int) -> dict[str, dict[str, float]]:
    """Per outcome (``succeeded``/``failed``), :func:`precision` over at most ``limit`` of the
    run's episodes with that outcome."""
    algorithm = load_trained(run_dir)
    if not isinstance(algorithm, LatentOfflineToOnline):
        raise SystemExit(f"{run_dir}: not a run of a latent-model agent")
    if offline:
        episodes = algorithm.observed.offline_episodes(algorithm.data_settings)
    else:
        episodes = load_dataset(run_dir / ONLINE_EPISODES).episodes
    torch.manual_seed(0)  # the posterior is sampled
    table = {}
    for outcome, wanted in (("succeeded", True), ("failed", False)):
        chosen = [e for e in episodes if succeeded(e) == wanted][:limit]
        if chosen:
            table[outcome] = {"episodes": float(len(chosen))}
            table[outcome].update(precision(*decoded_states(algorithm, chosen), near))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (online, or --offline)")
    parser.add_argument("--offline", action="store_true", help="the run's offline data instead")
    parser.add_argument("--near", type=float, default=0.1, help="hand-to-object distance (m)")
    parser.add_argument("--episodes", type=int, default=20, help="at most N per outcome")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/moto_posterior_precision.json")
    )
    args = parser.parse_args()
    print(f"{'run':<32}{'outcome':>10}" + "".join(f"{name:>15}" for name in COLUMNS))
    results = {}
    for run_dir in args.runs:
        results[str(run_dir)] = check(run_dir, args.offline, args.near, args.episodes)
        for outcome, row in results[str(run_dir)].items():
            cells = f"{row['episodes']:>15.0f}" + "".join(f"{row[c]:>15.2f}" for c in COLUMNS[1:])
            print(f"{run_dir.name:<32}{outcome:>10}" + cells, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
