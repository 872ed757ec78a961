"""How far MOTO's actor is from its own behaviour prior after offline pre-training: for each
run folder given (a ``phase=offline`` run, or any MOTO run with a checkpoint), the success rate
and mean return of the actor's greedy policy and of the behaviour prior's (its mean action,
``tanh μ_β(s)``), both on the world model's filtered latent state, over the same evaluation
episodes the run itself uses. A prior well above the actor means the actor has not caught up
with what the β-regulariser pulls it toward (the offline data's actions).

It also measures where the two part on the offline data itself: the mean over the data's
states (filtered as training filters them) of ``max_i |actor mode − prior mode|``, over each
episode's first K steps (``--early-steps``, default 32) and over the rest, and the same gap's
mean per action dimension (MetaWorld: the hand's x, y, z moves and the gripper). With
``--prior-first`` a third policy is scored: the prior for each episode's first K steps, then the
actor. Its success near the prior's says the actor fails early in episodes, on states that
windows inside one episode rarely show it (``algo.cross_episode_windows``,
docs/moto_experiments.md). With ``--prior-dimensions 0 1 3`` the actor is scored with those
action dimensions taken from the prior: which of its dimensions cost it the success. Last, the
mean std of the actor's and the prior's action distributions on those states (an actor at its
floor explores almost only through the sampled latent state), and the same per action dimension
over the first K steps and the rest (a σ of 1 or more draws near-random actions when exploring).

    python benchmarks/moto_prior_gap.py runs/box-close_offline runs/door-open_offline \\
        [--episodes 10] [--early-steps 32] [--prior-first] [--prior-dimensions 0 1 3]
    # prints a table, writes benchmarks/results/moto_prior_gap.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from framework.evaluation import evaluate
from framework.library.actor_critic import BehaviourPrior, TanhGaussianActor
from framework.library.latent_agent import episode_policy_inputs
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.library.latent_policy import LatentPolicy
from framework.library.rssm import WorldModel
from framework.phases import EVAL_SEED_OFFSET
from framework.runner import load_trained


class PriorFirstPolicy(LatentPolicy):
    """Greedy: the behaviour prior's action for the first ``steps`` steps of each episode, the
    actor's after; one filtered latent state throughout."""

    def __init__(
        self,
        world_model: WorldModel,
        actor: TanhGaussianActor,
        prior: BehaviourPrior,
        obs_key: str,
        steps: int,
        device: torch.device,
        reads_observation: bool,
    ) -> None:
        super().__init__(world_model, actor, obs_key, False, device, None, reads_observation)
        self.heads, self.steps, self._step = (prior, actor), steps, 0

    def reset(self) -> None:
        super().reset()
        self._step = 0

    def act(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        self.actor = self.heads[self._step >= self.steps]
        self._step += 1
        return super().act(obs)


class PriorDimensionsHead(torch.nn.Module):
    """Greedy: the actor's mode with the action dimensions ``dimensions`` taken from the
    behaviour prior's mode; acts in :class:`LatentPolicy` in place of a head."""

    def __init__(
        self, actor: TanhGaussianActor, prior: BehaviourPrior, dimensions: list[int]
    ) -> None:
        super().__init__()
        if not all(0 <= d < actor.action_dim for d in dimensions):
            raise SystemExit(
                f"--prior-dimensions {dimensions}: this agent's actions have dimensions "
                f"0 to {actor.action_dim - 1}"
            )
        self.actor, self.prior, self.dimensions = actor, prior, dimensions
        self.action_dim = actor.action_dim

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., action_dim)``: the actor's mode, the chosen dimensions the prior's."""
        action = self.actor.mode(features).clone()
        action[..., self.dimensions] = self.prior.mode(features)[..., self.dimensions]
        return action


@torch.no_grad()
def offline_features(algorithm: LatentOfflineToOnline) -> list[torch.Tensor]:
    """Each offline episode's actor inputs ``(T, ·)`` as the prior is fitted on them: features
    filtered as training filters them (the posterior sampled, from a fixed seed), or the
    normalised observations (``algo.policy_input=observation``)."""
    torch.manual_seed(0)
    agent, key, device = algorithm.agent, algorithm.obs_key, algorithm.context.device
    return [
        episode_policy_inputs(agent, [episode], key, device)[0]
        for episode in algorithm.observed.offline_episodes(algorithm.data_settings)
    ]


@torch.no_grad()
def mode_gap(
    algorithm: LatentOfflineToOnline, features: list[torch.Tensor], early_steps: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Over the offline states ``features`` (per episode), each episode's first ``early_steps``
    steps (``early``) and the rest (``later``): the mean of ``max_i |actor mode − prior mode|``,
    and the mean of ``|actor mode − prior mode|`` per action dimension ``i``."""
    agent, gaps = algorithm.agent, {"early": [], "later": []}
    for episode in features:
        gap = (agent.actor.mode(episode) - agent.prior.mode(episode)).abs()
        gaps["early"].append(gap[:early_steps])
        gaps["later"].append(gap[early_steps:])
    gaps = {part: torch.cat(values) for part, values in gaps.items()}
    largest = {part: float(gap.amax(-1).mean()) for part, gap in gaps.items()}
    per_dimension = {part: gap.mean(0).tolist() for part, gap in gaps.items()}
    return largest, per_dimension


@torch.no_grad()
def action_spread(
    algorithm: LatentOfflineToOnline, features: list[torch.Tensor]
) -> dict[str, float]:
    """Mean over the offline states ``features`` and action dimensions of the actor's and the
    prior's std ``σ(s)`` (before the tanh). The actor explores online with its own σ: one at
    the floor (``e^log_std_min``) hardly explores."""
    states = torch.cat(features)
    return {
        name: float(head.mean_and_log_std(states)[1].exp().mean())
        for name, head in (("actor", algorithm.agent.actor), ("prior", algorithm.agent.prior))
    }


@torch.no_grad()
def action_spread_per_dimension(
    algorithm: LatentOfflineToOnline, features: list[torch.Tensor], early_steps: int
) -> dict[str, dict[str, list[float]]]:
    """Per head and action dimension, the mean σ over each offline episode's first
    ``early_steps`` steps (``early``) and the rest (``later``). The training episodes sample
    with the actor's σ: a σ of 1 or more (before the tanh) draws near-random actions."""
    spread: dict[str, dict[str, list[float]]] = {}
    for name, head in (("actor", algorithm.agent.actor), ("prior", algorithm.agent.prior)):
        sigmas = [head.mean_and_log_std(episode)[1].exp() for episode in features]
        spread[name] = {
            "early": torch.cat([s[:early_steps] for s in sigmas]).mean(0).tolist(),
            "later": torch.cat([s[early_steps:] for s in sigmas]).mean(0).tolist(),
        }
    return spread


def actor_and_prior(
    run_dir: Path,
    episodes: int,
    early_steps: int,
    prior_first: bool,
    prior_dimensions: list[int],
) -> dict[str, dict]:
    """Success rate and mean return of the actor and of the behaviour prior in ``run_dir``'s
    checkpoint, over ``episodes`` evaluation episodes, with ``prior_first`` also of
    :class:`PriorFirstPolicy` for ``early_steps`` steps, with ``prior_dimensions`` also of
    :class:`PriorDimensionsHead` on those dimensions; and their :func:`mode_gap`."""
    algorithm = load_trained(run_dir)
    if not isinstance(algorithm, LatentOfflineToOnline) or algorithm.agent.prior is None:
        raise SystemExit(f"{run_dir}: not a run of an algorithm with a behaviour prior")
    cfg = algorithm.context.cfg
    agent, obs_key = algorithm.agent, algorithm.obs_key.removeprefix("obs.")
    device = algorithm.context.device
    reads = agent.policy_reads_observation
    policies = {
        name: LatentPolicy(agent.world_model, head, obs_key, False, device, None, reads)
        for name, head in (("actor", agent.actor), ("prior", agent.prior))
    }
    if prior_first:
        policies["prior_first"] = PriorFirstPolicy(
            agent.world_model, agent.actor, agent.prior, obs_key, early_steps, device, reads
        )
    if prior_dimensions:
        head = PriorDimensionsHead(agent.actor, agent.prior, prior_dimensions)
        policies["prior_dims"] = LatentPolicy(
            agent.world_model, head, obs_key, False, device, None, reads
        )
    features = offline_features(algorithm)
    largest_gap, gap_per_dimension = mode_gap(algorithm, features, early_steps)
    results: dict[str, dict] = {
        "mode_gap": largest_gap,
        "mode_gap_per_dimension": gap_per_dimension,
        "action_std": action_spread(algorithm, features),
        "action_std_per_dimension": action_spread_per_dimension(algorithm, features, early_steps),
    }
    for name, policy in policies.items():
        scores = evaluate(policy, algorithm.env_factory, episodes, cfg.seed + EVAL_SEED_OFFSET)
        results[name] = {key: scores[key] for key in ("success_rate", "mean_return")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="MOTO run folders")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--early-steps", type=int, default=32, help="K, see above")
    parser.add_argument(
        "--prior-first", action="store_true", help="also score: prior for K steps, then actor"
    )
    parser.add_argument(
        "--prior-dimensions",
        type=int,
        nargs="+",
        default=[],
        help="also score: the actor with these action dimensions from the prior",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moto_prior_gap.json"))
    args = parser.parse_args()
    table = {}
    names = ["actor", "prior"] + (["prior_first"] if args.prior_first else [])
    names += ["prior_dims"] if args.prior_dimensions else []
    header = [f"{name} {what}" for what in ("success", "return") for name in names]
    header += [f"gap first {args.early_steps}", "gap later", "actor std", "prior std"]
    print(f"{'run':<44}" + "".join(f"{title:>20}" for title in header))
    for run_dir in args.runs:
        row = table[str(run_dir)] = actor_and_prior(
            run_dir, args.episodes, args.early_steps, args.prior_first, args.prior_dimensions
        )
        successes = [f"{row[name]['success_rate']:>20.2f}" for name in names]
        returns = [f"{row[name]['mean_return']:>20.1f}" for name in names]
        gaps = [f"{row['mode_gap'][part]:>20.3f}" for part in ("early", "later")]
        gaps += [f"{row['action_std'][name]:>20.3f}" for name in ("actor", "prior")]
        print(f"{run_dir.name:<44}" + "".join(successes + returns + gaps), flush=True)
        for part, gap in row["mode_gap_per_dimension"].items():
            print(f"  mean gap per action dimension, {part}: " + " ".join(f"{g:.3f}" for g in gap))
        for name, parts in row["action_std_per_dimension"].items():
            for part, sigma in parts.items():
                print(
                    f"  {name} std per action dimension, {part}: "
                    + " ".join(f"{v:.3f}" for v in sigma)
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
