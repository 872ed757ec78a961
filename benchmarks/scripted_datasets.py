"""Success rate of MetaWorld's scripted policies under Gaussian action noise, measured on the
datasets `framework collect` writes (state observations). Prints a table and writes the figures
to ``benchmarks/results/scripted_datasets.json``.

    python benchmarks/scripted_datasets.py --episodes 10 --noise 0.1 --seed 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from framework.data import load_dataset
from framework.data.collect import collect

TASKS = [
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "box-close-v3",
    "shelf-place-v3",
    "disassemble-v3",
]


def measure(task: str, episodes: int, noise: float, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        rate = collect(task, episodes, noise, "state", Path(out), seed)
        seconds = time.perf_counter() - start
        dataset = load_dataset(out)
    returns = [float(episode["reward"].sum()) for episode in dataset.episodes]
    first = [int(np.argmax(ep["success"])) + 1 for ep in dataset.episodes if ep["success"].any()]
    return {
        "success_rate": rate,
        "mean_return": float(np.mean(returns)),
        "mean_steps_to_success": float(np.mean(first)) if first else float("nan"),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {task: measure(task, args.episodes, args.noise, args.seed) for task in args.tasks}
    print(f"\n{'task':<26}{'success':>9}{'return':>10}{'steps to success':>18}{'seconds':>9}")
    for task, row in results.items():
        print(
            f"{task:<26}{row['success_rate']:>9.2f}{row['mean_return']:>10.1f}"
            f"{row['mean_steps_to_success']:>18.1f}{row['seconds']:>9.1f}"
        )
    path = Path(__file__).parent / "results" / "scripted_datasets.json"
    settings = {"episodes": args.episodes, "noise": args.noise, "seed": args.seed, "obs": "state"}
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
