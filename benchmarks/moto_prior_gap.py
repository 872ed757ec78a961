"""How far MOTO's actor is from its own behaviour prior after offline pre-training: for each
run folder given (a ``phase=offline`` run, or any MOTO run with a checkpoint), the success rate
and mean return of the actor's greedy policy and of the behaviour prior's (its mean action,
``tanh μ_β(s)``), both on the world model's filtered latent state, over the same evaluation
episodes the run itself uses. A prior well above the actor means the actor has not caught up
with what the β-regulariser pulls it toward (the offline data's actions).

    python benchmarks/moto_prior_gap.py runs/box-close_offline runs/door-open_offline \\
        [--episodes 10]   # prints a table, writes benchmarks/results/moto_prior_gap.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from tempfile import TemporaryDirectory

from omegaconf import OmegaConf

from framework.evaluation import evaluate
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.library.latent_policy import LatentPolicy
from framework.metrics import RunLogger
from framework.phases import EVAL_SEED_OFFSET
from framework.runner import RUN_CONFIG, build_algorithm


def actor_and_prior(run_dir: Path, episodes: int) -> dict[str, dict[str, float]]:
    """Success rate and mean return of the actor and of the behaviour prior in ``run_dir``'s
    checkpoint, over ``episodes`` evaluation episodes."""
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    cfg.init, cfg.resume = None, None
    with TemporaryDirectory() as scratch:
        algorithm = build_algorithm(cfg, Path(scratch), RunLogger(Path(scratch), False))
        if not isinstance(algorithm, LatentOfflineToOnline) or algorithm.agent.prior is None:
            raise SystemExit(f"{run_dir}: not a run of an algorithm with a behaviour prior")
        algorithm.load(str(run_dir))
        agent, obs_key = algorithm.agent, algorithm.obs_key.removeprefix("obs.")
        results = {}
        for name, head in (("actor", agent.actor), ("prior", agent.prior)):
            policy = LatentPolicy(agent.world_model, head, obs_key, False, algorithm.context.device)
            scores = evaluate(policy, algorithm.env_factory, episodes, cfg.seed + EVAL_SEED_OFFSET)
            results[name] = {key: scores[key] for key in ("success_rate", "mean_return")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="MOTO run folders")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moto_prior_gap.json"))
    args = parser.parse_args()
    table = {}
    print(
        f"{'run':<44}{'actor success':>14}{'prior success':>14}{'actor return':>14}"
        f"{'prior return':>14}"
    )
    for run_dir in args.runs:
        row = table[str(run_dir)] = actor_and_prior(run_dir, args.episodes)
        actor, prior = row["actor"], row["prior"]
        print(
            f"{run_dir.name:<44}{actor['success_rate']:>14.2f}{prior['success_rate']:>14.2f}"
            f"{actor['mean_return']:>14.1f}{prior['mean_return']:>14.1f}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
