"""MOTO's learner speed on this machine: (a) full agent updates per second (world model ELBO +
behaviour prior + actor-critic on H=15 imagined steps from every posterior state) and world-model
updates alone (ELBO, one clipped Adam step) on sequence batches of 16×50, from states (39-d,
MetaWorld's size) and from 64×64 pixels; (b) imagined steps per second, and env steps acted per
second (filtering one observation, then the actor's action, or the lookahead's choice among
`--lookahead-candidates` offsets, `algo.lookahead_candidates`); (c) the latent transition
ensemble of 7 heads as one batched network (mbrl-lib's ensemble layers) against a plain Python
loop over 7 separate MLPs, forward and backward on 1, 16 and 800 (state, action) pairs (800: a
batch's states). Default sizes (`world_model=rssm`, `dynamics=latent_ensemble`).

    python benchmarks/moto_speed.py [--device cuda]   # prints a table, writes
                                                     # benchmarks/results/moto_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from framework.interfaces import EnsemblePrediction
from framework.library.actor_critic import BehaviourPrior, Critic, TanhGaussianActor
from framework.library.encoders import ConvEncoder, MLPEncoder
from framework.library.latent_agent import (
    ImaginationSettings,
    LatentAgent,
    OptimiserSettings,
    build_world_model,
)
from framework.library.latent_policy import LatentPolicy
from framework.library.layers import mlp
from framework.library.lookahead import ImaginedLookahead
from framework.library.rssm import LatentEnsembleHeads
from framework.library.uncertainty import EnsembleDisagreement

ACTION_DIM, STATE_DIM, HEADS, DETER, STOCH, HIDDEN = 4, 39, 7, 200, 30, 200
OBS_SHAPES = {"states": (STATE_DIM,), "pixels": (3, 64, 64)}


def timed(step: Callable[[], None], seconds: float, warmup: int = 2) -> float:
    """Calls of ``step`` per second, over at least ``seconds`` after ``warmup`` calls (a GPU
    finishes its queued work before each clock reading)."""
    for _ in range(warmup):
        step()
    synchronise()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    synchronise()
    return calls / (time.perf_counter() - start)


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def agent(obs_shape: tuple[int, ...], device: torch.device) -> LatentAgent:
    encoder = ConvEncoder(obs_shape) if len(obs_shape) == 3 else MLPEncoder(obs_shape)
    heads = LatentEnsembleHeads(DETER, ACTION_DIM, STOCH, HEADS, HIDDEN, layers=1)
    world_model = build_world_model(encoder, heads, obs_shape, ACTION_DIM)
    feature_dim = world_model.rssm.feature_dim
    return LatentAgent(
        world_model,
        TanhGaussianActor(feature_dim, ACTION_DIM),
        Critic(feature_dim),
        EnsembleDisagreement(),
        BehaviourPrior(feature_dim, ACTION_DIM),
        ImaginationSettings(),
        OptimiserSettings(),
    ).to(device)


def batch(
    obs_shape: tuple[int, ...], size: int, length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    if len(obs_shape) == 3:
        obs = torch.randint(0, 256, (size, length, *obs_shape), dtype=torch.uint8)
    else:
        obs = torch.randn(size, length, *obs_shape)
    is_first = torch.zeros(size, length, dtype=torch.bool)
    is_first[:, 0] = True
    tensors = {
        "obs": obs,
        "action": torch.rand(size, length, ACTION_DIM) * 2 - 1,
        "reward": torch.rand(size, length),
        "is_first": is_first,
    }
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def update_speed(obs_shape: tuple[int, ...], args: argparse.Namespace) -> dict[str, float]:
    learner = agent(obs_shape, args.device)
    data = batch(obs_shape, args.batch, args.length, args.device)
    updates = timed(lambda: learner.update(data), args.seconds)
    model_updates = timed(lambda: learner.update_world_model(data), args.seconds)
    start = learner.world_model.rssm.observe(
        learner.world_model.embed(data["obs"].flatten(0, 1)).reshape(args.batch, args.length, -1),
        data["action"],
        data["is_first"],
    ).posterior.flatten_detached()

    def imagine() -> None:
        with torch.no_grad():
            learner.imagine(start)

    rollouts = timed(imagine, args.seconds)
    horizon = learner.imagination.horizon
    obs = data["obs"][0, 0].cpu().numpy()
    acting = {}
    for name, lookahead in (
        ("acting_steps_per_s", None),
        (
            "lookahead_acting_steps_per_s",
            ImaginedLookahead(learner, args.lookahead_candidates, 0.1, 1),
        ),
    ):
        policy = LatentPolicy(learner.world_model, learner.actor, "", False, args.device, lookahead)
        acting[name] = timed(lambda policy=policy: policy.act(obs), args.seconds)
    return {
        "updates_per_s": updates,
        "world_model_updates_per_s": model_updates,
        "imagined_steps_per_s": rollouts * len(start.deter) * horizon,
        **acting,
    }


class LoopHeads(nn.Module):
    """The same heads as separate MLPs run one after another, the plain-Python baseline; each
    computes the same Gaussian (mean, softplus std + 0.1, variance) the vectorised heads do."""

    def __init__(self) -> None:
        super().__init__()
        sizes = [DETER + ACTION_DIM, HIDDEN, 2 * STOCH]
        self.heads = nn.ModuleList(mlp(sizes) for _ in range(HEADS))

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> EnsemblePrediction:
        inputs = torch.cat([state, action], dim=-1)
        means, variances = [], []
        for head in self.heads:
            mean, raw_std = head(inputs).chunk(2, dim=-1)
            means.append(mean)
            variances.append((nn.functional.softplus(raw_std) + 0.1) ** 2)
        return EnsemblePrediction(torch.stack(means), torch.stack(variances))


def heads_speed(args: argparse.Namespace, rows: int) -> dict[str, float]:
    """Forward and backward of all 7 heads on ``rows`` (state, action) pairs."""
    states = torch.randn(rows, DETER, device=args.device)
    actions = torch.rand(rows, ACTION_DIM, device=args.device) * 2 - 1
    vectorised = LatentEnsembleHeads(DETER, ACTION_DIM, STOCH, HEADS, HIDDEN, layers=1)
    vectorised, loop = vectorised.to(args.device), LoopHeads().to(args.device)

    def step(heads: Callable[[torch.Tensor, torch.Tensor], EnsemblePrediction]) -> None:
        prediction = heads(states, actions)
        (prediction.mean.sum() + prediction.var.sum()).backward()

    def step_vectorised() -> None:
        step(vectorised.predict)

    def step_loop() -> None:
        step(loop)

    fast, slow = timed(step_vectorised, args.seconds), timed(step_loop, args.seconds)
    return {"vectorised_per_s": fast, "loop_per_s": slow, "speedup": fast / slow}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per figure")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--head-rows",
        nargs="*",
        type=int,
        default=[1, 16, 800],
        help="states per heads call (none: skip the heads)",
    )
    parser.add_argument(
        "--obs",
        nargs="*",
        choices=OBS_SHAPES,
        default=list(OBS_SHAPES),
        help="observations to time the agent on (none: the heads only)",
    )
    parser.add_argument("--lookahead-candidates", type=int, default=16)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moto_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {
        "settings": {
            **vars(args),
            "out": str(args.out),
            "device": device_name(args.device),
            "heads": HEADS,
        },
        **{obs: update_speed(OBS_SHAPES[obs], args) for obs in args.obs},
        "ensemble_heads": {str(rows): heads_speed(args, rows) for rows in args.head_rows},
    }
    print(
        f"MOTO learner speed, batch {args.batch}x{args.length}, {args.threads} threads, "
        f"{device_name(args.device)}"
    )
    print(f"{'figure':<44}{'value':>12}")
    for obs in args.obs:
        print(f"{obs + ': agent updates / s':<44}{results[obs]['updates_per_s']:>12.2f}")
        model_rate = results[obs]["world_model_updates_per_s"]
        print(f"{obs + ': world-model updates / s':<44}{model_rate:>12.2f}")
        print(f"{obs + ': imagined steps / s':<44}{results[obs]['imagined_steps_per_s']:>12.0f}")
        print(f"{obs + ': acted steps / s, actor':<44}{results[obs]['acting_steps_per_s']:>12.1f}")
        label = f"{obs}: acted steps / s, lookahead {args.lookahead_candidates}"
        print(f"{label:<44}{results[obs]['lookahead_acting_steps_per_s']:>12.1f}")
    for rows, heads in results["ensemble_heads"].items():
        label = f"7 heads on {rows} states, fwd+bwd / s"
        print(f"{label + ': vectorised':<44}{heads['vectorised_per_s']:>12.1f}")
        print(f"{label + ': Python loop':<44}{heads['loop_per_s']:>12.1f}")
        print(f"{'  speed-up':<44}{heads['speedup']:>12.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
