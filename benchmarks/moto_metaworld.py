"""MOTO learning on MetaWorld from states (sparse success reward): offline pre-training on 10
scripted trajectories (action noise 0.1), then online fine-tuning; success rate over 10
evaluation episodes after pre-training and every few online episodes. Runs each (algo, task,
seed) as its own process (``--jobs`` at a time), then writes per-run CSVs
``step,episode,success,seed``, a PNG of success vs online episodes (mean and 95% interval over
seeds) and a JSON summary.

    python benchmarks/moto_metaworld.py --tasks box-close-v3 shelf-place-v3 disassemble-v3 \\
        --seeds 0 1 2 --algos moto moto_no_uncertainty moto_no_policy_reg
    python benchmarks/moto_metaworld.py --tasks door-open-v3 --seeds 0 --online-episodes 10 \\
        --offline-updates 1000   # a reduced run
    python benchmarks/moto_metaworld.py --report-only --tasks box-close-v3 --seeds 0 1 2 \\
        --algos moto moto_no_uncertainty   # the table and plot of the runs finished so far
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
from learning_curves import algo_colors, read_curve, write_curve_csv
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EASY = ("door-open-v3", "drawer-close-v3", "button-press-topdown-v3")
HARD = ("box-close-v3", "shelf-place-v3", "disassemble-v3")


def run_one(algo: str, task: str, seed: int, args: argparse.Namespace) -> Path | None:
    """One training run in its own process; returns its run folder (None: not run, with
    ``--report-only``). A run stopped after its first checkpoint continues from it (``framework
    run resume=``, its saved config), so a table can be built over several sittings."""
    run_dir = args.out / algo / task / f"seed{seed}"
    if (run_dir / "results.json").exists() and not args.rerun:
        return run_dir
    if args.report_only:
        return None
    if (run_dir / "checkpoint.pt").exists() and not args.rerun:
        _framework_run([f"resume={run_dir}"], run_dir.parent / f"seed{seed}.log", "a", args)
        return run_dir
    overrides = [
        f"+algo={algo}",
        "env=metaworld",
        f"env.task={task}",
        f"seed={seed}",
        f"algo.data.cache={args.data_cache}",
        f"algo.offline.updates={args.offline_updates}",
        f"algo.online.episodes={args.online_episodes}",
        f"algo.online.updates_per_episode={args.updates_per_episode}",
        f"algo.online.eval_every={args.eval_every}",
        f"hydra.run.dir={run_dir}",
        "progress=false",
        *args.overrides,
    ]
    _framework_run(overrides, run_dir.parent / f"seed{seed}.log", "w", args)
    return run_dir


def _framework_run(arguments: list[str], log: Path, mode: str, args: argparse.Namespace) -> None:
    """``framework run ARGUMENTS`` in its own process, its output written (``mode`` "w") or
    appended ("a") to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, mode) as handle:
        subprocess.run(
            [sys.executable, "-m", "framework.cli", "run", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval (0 for one seed)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, 0.0
    return mean, float(stats.sem(values) * stats.t.ppf(0.975, len(values) - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[*HARD, *EASY])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["moto"])
    parser.add_argument("--offline-updates", type=int, default=5000)
    parser.add_argument("--online-episodes", type=int, default=100)
    parser.add_argument("--updates-per-episode", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--data-cache", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moto_metaworld"))
    parser.add_argument("--rerun", action="store_true", help="run again from the start")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="start no run: report the finished ones (an algo and task with none is left out)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    jobs = [(a, t, s) for a in args.algos for t in args.tasks for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        run_dirs = list(pool.map(lambda job: run_one(*job, args), jobs))

    summary: dict[str, dict[str, dict[str, float]]] = {}
    figure, axes = plt.subplots(1, len(args.tasks), figsize=(4 * len(args.tasks), 3.2))
    axes = np.atleast_1d(axes)
    print(f"{'algo':<22}{'task':<26}{'seeds':>6}{'offline':>16}{'final':>16}{'best':>16}")
    colors = algo_colors(args.algos)
    for algo in args.algos:
        for axis, task in zip(axes, args.tasks, strict=True):
            runs = [
                d
                for (a, t, _), d in zip(jobs, run_dirs, strict=True)
                if (a, t) == (algo, task) and d is not None
            ]
            if not runs:
                continue
            curves = [read_curve(d) for d in runs]
            episodes = curves[0].episodes
            matrix = np.array([c.success for c in curves])
            means, widths = zip(*(interval(list(col)) for col in matrix.T), strict=True)
            axis.plot(episodes, means, label=algo, color=colors[algo])
            axis.fill_between(
                episodes,
                np.subtract(means, widths),
                np.add(means, widths),
                alpha=0.2,
                color=colors[algo],
            )
            axis.set_title(task)
            axis.set_xlabel("online episodes")
            axis.set_ylim(-0.05, 1.05)
            offline, final = interval([c.offline for c in curves]), interval(list(matrix[:, -1]))
            best = interval(list(matrix.max(axis=1)))
            summary.setdefault(algo, {})[task] = {
                "offline_mean": offline[0],
                "offline_ci95": offline[1],
                "final_mean": final[0],
                "final_ci95": final[1],
                "best_mean": best[0],
                "best_ci95": best[1],
                "min_during_finetuning": float(matrix[:, 1:].min()) if matrix.shape[1] > 1 else 0,
                "seeds": len(curves),
                "online_episodes": episodes[-1],
            }
            print(
                f"{algo:<22}{task:<26}{len(curves):>6}{offline[0]:>9.2f} ±{offline[1]:.2f}"
                f"{final[0]:>9.2f} ±{final[1]:.2f}{best[0]:>9.2f} ±{best[1]:.2f}"
            )
            for run_dir, run_curve in zip(runs, curves, strict=True):
                columns = ("step", "episode", "success", "seed")
                write_curve_csv(run_curve, run_dir / "success.csv", columns)
    axes[0].set_ylabel("success rate")
    handles: dict[str, object] = {}
    for axis in axes:
        lines, labels = axis.get_legend_handles_labels()
        handles.update(zip(labels, lines, strict=True))
    axes[0].legend(handles.values(), handles.keys())
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out / "success.png", dpi=120)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {args.out / 'success.png'}, {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
