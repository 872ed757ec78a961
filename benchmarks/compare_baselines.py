"""MOTO against every baseline on the hard MetaWorld tasks from states (sparse success reward):
offline data = 10 scripted trajectories (action noise 0.1), then online fine-tuning; success
rate over the evaluation episodes after pre-training and every few online episodes.

Each algorithm's runs (tasks x seeds) go through one Hydra multirun with the joblib launcher
(``--jobs`` at a time). Then: per-run CSVs ``step,success,seed`` (TD-MPC2's convention) under
``OUT/csv/ALGO/TASK/seedS.csv``; aggregate figures from rliable (IQM and mean of the final
success over all runs with 95% stratified-bootstrap intervals, performance profiles); a PNG of
IQM success vs online episodes with those intervals as bands, beside the profiles; a JSON
summary and a printed table. Algorithms without an online phase (bc, lompo) are drawn flat.

    python benchmarks/compare_baselines.py                       # the full protocol (GPU-days)
    python benchmarks/compare_baselines.py --seeds 0 1 --offline-updates 500 \\
        --online-episodes 10 --updates-per-episode 20 env.max_episode_steps=200  # reduced
    python benchmarks/compare_baselines.py --aggregate-only      # re-read finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import yaml
from learning_curves import Curve, algo_colors, read_curve, write_curve_csv
from rliable import library as rly
from rliable import metrics, plot_utils

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HARD = ("box-close-v3", "shelf-place-v3", "disassemble-v3")
ALGOS = ("moto", "dreamer", "lompo", "mbpo", "iql", "bc")
#: Algorithms with one phase of offline training, and where their update count lives.
OFFLINE_ONLY = {"bc": "algo.train", "lompo": "algo.offline"}
REPS = 2000  # bootstrap resamples


def sweep_overrides(algo: str, args: argparse.Namespace) -> list[str]:
    """The Hydra overrides of ``algo``'s multirun: tasks x seeds, budgets, joblib."""
    if algo in OFFLINE_ONLY:
        section = OFFLINE_ONLY[algo]
        budget = [f"{section}.updates={args.offline_updates}"]
        if algo == "bc":
            budget.append(f"algo.train.eval_episodes={args.eval_episodes}")
        else:
            budget.append(f"algo.online.eval_episodes={args.eval_episodes}")
    else:
        budget = [
            f"algo.offline.updates={args.offline_updates}",
            f"algo.online.episodes={args.online_episodes}",
            f"algo.online.updates_per_episode={args.updates_per_episode}",
            f"algo.online.eval_every={args.eval_every}",
            f"algo.online.eval_episodes={args.eval_episodes}",
        ]
    return [
        "-m",
        f"+algo={algo}",
        "env=metaworld",
        f"env.task={','.join(args.tasks)}",
        f"seed={','.join(map(str, args.seeds))}",
        f"algo.data.cache={args.data_cache.resolve()}",
        *budget,
        "progress=false",
        "tensorboard=false",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.jobs}",
        f"hydra.sweep.dir={(args.out / 'runs' / algo).resolve()}",
        *args.overrides,
    ]


def run_sweep(algo: str, args: argparse.Namespace) -> None:
    """``algo``'s multirun in a subprocess, its output in ``OUT/runs/ALGO.log``."""
    log = args.out / "runs" / f"{algo}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{algo}: {len(args.tasks) * len(args.seeds)} runs, log {log}", flush=True)
    with open(log, "w") as handle:
        subprocess.run(
            [sys.executable, "-m", "framework.cli", "run", *sweep_overrides(algo, args)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"},
        )


def finished_runs(algo: str, args: argparse.Namespace) -> dict[tuple[str, int], Curve]:
    """``algo``'s finished runs by (task, seed), read from its sweep's job folders."""
    runs = {}
    for config in sorted((args.out / "runs" / algo).glob("*/config.yaml")):
        if not (config.parent / "results.json").exists():
            continue
        cfg = yaml.safe_load(config.read_text())
        runs[(cfg["env"]["task"], cfg["seed"])] = read_curve(config.parent)
    return runs


def score_matrix(runs: dict[tuple[str, int], Curve], tasks: list[str], point: int) -> np.ndarray:
    """Success at evaluation ``point`` (-1: the last) as rliable's (runs, tasks) matrix: one
    row per seed that finished every task."""
    seeds = sorted({seed for _, seed in runs})
    seeds = [s for s in seeds if all((task, s) in runs for task in tasks)]
    return np.array([[_at(runs[(task, seed)].success, point) for task in tasks] for seed in seeds])


def _at(values: list[float], point: int) -> float:
    """``values[point]``; an algorithm evaluated once (offline only) stays at that value."""
    return values[min(point, len(values) - 1)] if point >= 0 else values[-1]


def aggregate(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--tasks", nargs="+", default=list(HARD))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--offline-updates", type=int, default=5000)
    parser.add_argument("--online-episodes", type=int, default=100)
    parser.add_argument("--updates-per-episode", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (joblib)")
    parser.add_argument("--data-cache", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare_baselines"))
    parser.add_argument("--aggregate-only", action="store_true", help="only re-read runs")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if not args.aggregate_only:
        for algo in args.algos:
            run_sweep(algo, args)

    runs = {algo: finished_runs(algo, args) for algo in args.algos}
    runs = {algo: found for algo, found in runs.items() if found}
    for algo, found in runs.items():
        for (task, seed), curve in found.items():
            path = args.out / "csv" / algo / task / f"seed{seed}.csv"
            write_curve_csv(curve, path, ("step", "success", "seed"))
    final = {algo: score_matrix(found, args.tasks, -1) for algo, found in runs.items()}
    offline = {algo: score_matrix(found, args.tasks, 0) for algo, found in runs.items()}
    final_point, final_ci = rly.get_interval_estimates(final, aggregate, reps=REPS)
    offline_point, offline_ci = rly.get_interval_estimates(offline, aggregate, reps=REPS)

    figure, (curves_axis, profile_axis) = plt.subplots(1, 2, figsize=(11, 4))
    colors = algo_colors(runs)
    points = max(len(curve.success) for found in runs.values() for curve in found.values())
    summary = {}
    print(f"{'algo':<12}{'runs':>5}{'offline IQM':>14}{'final IQM [95% CI]':>26}{'final mean':>22}")
    for algo, found in runs.items():
        episodes = max((c.episodes for c in found.values()), key=len)
        series = {index: score_matrix(found, args.tasks, index) for index in range(points)}
        iqm, ci = rly.get_interval_estimates(
            series, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=REPS
        )
        xs = [
            episodes[min(i, len(episodes) - 1)] if len(episodes) > 1 else i for i in range(points)
        ]
        if len(episodes) == 1:  # offline only: flat across the online axis
            xs = list(np.linspace(0, args.online_episodes, points))
        curves_axis.plot(xs, [iqm[i][0] for i in range(points)], label=algo, color=colors[algo])
        curves_axis.fill_between(
            xs,
            [ci[i][0, 0] for i in range(points)],
            [ci[i][1, 0] for i in range(points)],
            alpha=0.2,
            color=colors[algo],
        )
        summary[algo] = {
            "runs": int(final[algo].size),
            "offline_iqm": float(offline_point[algo][0]),
            "offline_iqm_ci95": offline_ci[algo][:, 0].tolist(),
            "final_iqm": float(final_point[algo][0]),
            "final_iqm_ci95": final_ci[algo][:, 0].tolist(),
            "final_mean": float(final_point[algo][1]),
            "final_mean_ci95": final_ci[algo][:, 1].tolist(),
            "final_by_task": dict(zip(args.tasks, final[algo].mean(axis=0).tolist(), strict=True)),
            "online_episodes": episodes[-1],
        }
        low, high = final_ci[algo][:, 0]
        mean_low, mean_high = final_ci[algo][:, 1]
        print(
            f"{algo:<12}{final[algo].size:>5}{offline_point[algo][0]:>14.2f}"
            f"{final_point[algo][0]:>10.2f} [{low:.2f}, {high:.2f}]"
            f"{final_point[algo][1]:>10.2f} [{mean_low:.2f}, {mean_high:.2f}]"
        )
    curves_axis.set(xlabel="online episodes", ylabel="success rate (IQM)", ylim=(-0.05, 1.05))
    curves_axis.set_title(f"{', '.join(args.tasks)}; 95% stratified-bootstrap bands", fontsize=8)
    curves_axis.legend(fontsize=8)
    taus = np.linspace(0.0, 1.0, 21)
    profiles, profile_cis = rly.create_performance_profile(final, taus, reps=REPS)
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=profile_cis,
        ax=profile_axis,
        colors=colors,
        xlabel=r"final success rate $\tau$",
        ylabel=r"fraction of runs with success $> \tau$",
    )
    figure.tight_layout()
    figure.savefig(args.out / "compare_baselines.png", dpi=120)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        "\nfinal success by task (mean over seeds):\n"
        + f"{'algo':<12}"
        + "".join(f"{task:>18}" for task in args.tasks)
    )
    for algo, entry in summary.items():
        print(f"{algo:<12}" + "".join(f"{entry['final_by_task'][t]:>18.2f}" for t in args.tasks))
    print(f"written: {args.out / 'compare_baselines.png'}, {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
