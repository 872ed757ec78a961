"""The learning curves runs log (``evaluation.csv``), read for the benchmarks' tables and plots,
and the colour each algo keeps in those plots."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from framework.metrics import read_log


@dataclass(frozen=True)
class Curve:
    """One run's evaluations: online episodes before each, its success rate, the env steps
    taken online, and the success right after offline pre-training (NaN without one)."""

    episodes: list[int]
    success: list[float]
    steps: list[int]
    offline: float
    seed: int


def read_curve(run_dir: Path) -> Curve:
    """The curve in ``run_dir/evaluation.csv``."""
    rows = read_log(run_dir / "evaluation.csv")
    offline = [float(row["success"]) for row in rows if float(row["offline"]) == 1.0]
    return Curve(
        episodes=[int(float(row["episode"])) for row in rows],
        success=[float(row["success"]) for row in rows],
        steps=[int(float(row["step"])) for row in rows],
        offline=offline[0] if offline else float("nan"),
        seed=int(float(rows[0]["seed"])),
    )


def write_curve_csv(curve: Curve, path: Path, columns: Sequence[str]) -> None:
    """``curve`` as a CSV with ``columns`` drawn from ``step``, ``episode``, ``success`` and
    ``seed`` (e.g. TD-MPC2's ``step,success,seed``)."""
    values = {"step": curve.steps, "episode": curve.episodes, "success": curve.success}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for index in range(len(curve.success)):
            writer.writerow(
                [curve.seed if name == "seed" else values[name][index] for name in columns]
            )


def algo_colors(algos: Iterable[str]) -> dict[str, str]:
    """One colour of matplotlib's default cycle (``C0``, ``C1``, ...) per algo, so an algo keeps
    its colour on every panel of a figure, also where it has no runs for some task."""
    return {algo: f"C{index}" for index, algo in enumerate(algos)}
