"""Does a latent agent's world model know what happened in its own online episodes? For each run
folder given (an online run of MOTO or any latent agent, with its checkpoint and
``online_episodes/``), every stored episode is filtered to its posterior states; from every
``--every``-th step the model then runs open loop on the episode's real actions for
``--horizon`` steps (the heads' mean prediction, no sampling), as imagination would from there.
Reported separately for the episodes that succeeded and those that failed:

- ``obs error``: the mean ``|decoded − real|`` of the observations over the open-loop steps, as
  the decoder reconstructs them (states: in units of each dimension's spread in the offline data);
- ``reward error``: the mean ``|r̂ − r|`` over those steps;
- ``phantom reward``: over windows whose real rewards are all 0, the mean of the largest
  predicted reward (a model that imagines success in failed attempts shows it here, and an actor
  trained on it would exploit it);
- ``u`` and ``α·u``: the uncertainty estimator's mean over the open-loop steps, and the penalty
  it puts on each imagined reward at the α of the run's last online episode (β likewise);
- ``return grad`` and ``prior grad``: at those starting states, with the actor's mode ``a_0``
  taken first and the actor after, the norms of ``∂(Σ_t R_t)/∂a_0`` (the imagined λ-returns of
  the horizon, as the actor loss sums them) and of ``β·∂(−log π_β(a_0|s_0))/∂a_0`` (the
  behaviour regulariser), averaged over the states: how hard each term pulls on the action;
- ``actor reward`` and ``actor u``: the mean reward and uncertainty the model predicts when the
  run's actor, not the episode's actions, acts for the horizon from the windows' starts (what
  the actor imagines, and how much of it α·u takes away);
- ``V@t``: the critic's mean value of the filtered state at step t of the episode
  (``--value-steps``), i.e. how early it tells the episodes that will succeed from the others.

With ``--estimators NAME...`` (registered uncertainty names, or ``all``) a second table asks
which estimator tracks the model's error, as a penalty needs to: per estimator, the Spearman
rank correlation over all windows (both outcomes) between its mean over a window and the
window's observation error, and its mean on the failed episodes' windows over that on the
successful ones'.

    python benchmarks/moto_model_check.py runs/box-close_online ... [--horizon 15] [--every 25] \\
        [--value-steps 0 25 50 100] [--estimators all]
    # prints the tables, writes benchmarks/results/moto_model_check.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from framework.data.format import load_dataset, succeeded
from framework.interfaces import UncertaintyEstimator
from framework.library.latent_agent import LatentAgent, episode_features
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.library.rssm import LatentState
from framework.phases import ONLINE_EPISODES
from framework.plugins import load_plugins
from framework.runner import load_trained

COLUMNS = (
    "episodes",
    "obs error",
    "reward error",
    "phantom reward",
    "u",
    "alpha*u",
    "return grad",
    "prior grad",
    "actor reward",
    "actor u",
)


def gradient_pulls(agent: LatentAgent, start: LatentState) -> dict[str, torch.Tensor]:
    """Per state of ``start`` ``(B, ·)``, the norms ``(B,)`` of the gradients that the imagined
    returns (``return``) and the behaviour regulariser (``prior``) put on the actor's mode
    action taken there."""
    action = agent.actor.mode(start.features).detach().requires_grad_(True)
    with torch.enable_grad():
        _, _, rollout = agent.imagine(start, first_action=action)
        (from_returns,) = torch.autograd.grad(rollout.returns.sum(), action)
        from_prior = torch.zeros_like(action)
        if agent.prior is not None and agent.imagination.beta > 0:
            pull = -agent.imagination.beta * agent.prior.log_prob(start.features, action).sum()
            (from_prior,) = torch.autograd.grad(pull, action)
    return {"return": from_returns.norm(dim=-1), "prior": from_prior.norm(dim=-1)}


@torch.no_grad()
def open_loop(
    algorithm: LatentOfflineToOnline,
    episode: dict[str, np.ndarray],
    horizon: int,
    every: int,
    estimators: Mapping[str, UncertaintyEstimator],
) -> dict[str, np.ndarray]:
    """Open-loop predictions along ``episode`` from every ``every``-th posterior state, each
    ``(W, horizon)`` over the W windows: observation error (normalised units), predicted and
    real rewards, the run's uncertainty (``u``) and each of ``estimators``' (``u:<name>``);
    ``return_grad``/``prior_grad`` ``(W,)`` from
    :func:`gradient_pulls` at the windows' starts; and ``value`` ``(T,)``, the critic's value
    of every filtered state an action was taken at (:func:`episode_features`)."""
    agent, device = algorithm.agent, algorithm.context.device
    model = agent.world_model
    obs = torch.as_tensor(episode[algorithm.obs_key], device=device).float()
    features, actions = episode_features(model, [episode], algorithm.obs_key, device)
    starts = torch.arange(0, len(actions) - horizon + 1, every, device=device)
    deter = model.rssm.deter_dim
    start = LatentState(features[starts, :deter], features[starts, deter:])
    state = start
    target = model.decoder.target(model.observation_target(obs))
    rows: dict[str, list[torch.Tensor]] = {"obs": [], "reward": [], "u": []}
    rows.update({f"u:{name}": [] for name in estimators})
    for k in range(horizon):
        state, prediction = model.rssm.prior_step(state, actions[starts + k])
        error = model.decoder(state.features) - target[starts + k + 1]
        rows["obs"].append(error.abs().flatten(1).mean(-1))
        rows["reward"].append(model.reward_head(state.features).squeeze(-1))
        rows["u"].append(agent.uncertainty(prediction))
        for name, estimator in estimators.items():
            rows[f"u:{name}"].append(estimator(prediction))
    result = {key: torch.stack(values, 1).cpu().numpy() for key, values in rows.items()}
    window = starts[:, None].cpu().numpy() + np.arange(horizon)
    result["real_reward"] = np.asarray(episode["reward"])[window]
    result["value"] = agent.critic.target_value(features).cpu().numpy()
    for name, norms in gradient_pulls(agent, start).items():
        result[f"{name}_grad"] = norms.cpu().numpy()
    with torch.random.fork_rng():  # the other columns draw as they did before this one
        _, _, imagined = agent.imagine(start)
    result["actor_reward"] = imagined.rewards.cpu().numpy()
    result["actor_u"] = imagined.uncertainty.cpu().numpy()
    return result


def mean_value_at(values: list[np.ndarray], step: int) -> float:
    """The mean of ``values[i][step]`` over the episodes that last that long (NaN if none)."""
    reached = [episode[step] for episode in values if len(episode) > step]
    return float(np.mean(reached)) if reached else float("nan")


def estimator_calibration(
    windows: Mapping[str, Mapping[str, np.ndarray]], names: list[str]
) -> dict[str, dict[str, float]]:
    """Per estimator in ``names``: ``spearman``, the rank correlation over the windows of both
    outcomes in ``windows`` (``succeeded``/``failed`` → :func:`open_loop`'s arrays, joined)
    between the estimator's and the observation error's window means; ``failed/succeeded``,
    the ratio of its means over the two outcomes' windows (NaN without both)."""
    parts = list(windows.values())
    error = np.concatenate([part["obs"].mean(1) for part in parts])
    table = {}
    for name in names:
        u = np.concatenate([part[f"u:{name}"].mean(1) for part in parts])
        if not np.ptp(u):  # constant over the windows (``none``): it ranks nothing
            table[name] = {"spearman": float("nan"), "failed/succeeded": float("nan")}
            continue
        ratio = float("nan")
        if {"succeeded", "failed"} <= set(windows):
            ratio = windows["failed"][f"u:{name}"].mean() / windows["succeeded"][f"u:{name}"].mean()
        table[name] = {
            "spearman": float(stats.spearmanr(u, error).statistic),
            "failed/succeeded": float(ratio),
        }
    return table


def check(
    run_dir: Path,
    horizon: int,
    every: int,
    value_steps: list[int],
    estimators: Mapping[str, UncertaintyEstimator],
) -> dict[str, dict[str, dict[str, float]]]:
    """``outcomes``: :data:`COLUMNS` and ``V@t`` for ``t`` in ``value_steps``, for the
    successful and the failed online episodes of ``run_dir``; ``estimators``:
    :func:`estimator_calibration` of ``estimators``."""
    algorithm = load_trained(run_dir)
    if not isinstance(algorithm, LatentOfflineToOnline):
        raise SystemExit(f"{run_dir}: not a run of a latent-model agent")
    episodes = load_dataset(run_dir / ONLINE_EPISODES).episodes
    # α and β as the run's fine-tuning schedule had them after its last episode (the run is
    # rebuilt with its offline values): the penalty and the regulariser's pull it trained with.
    algorithm.on_online_episode(len(episodes))
    torch.manual_seed(0)
    alpha = algorithm.agent.imagination.alpha
    table, windows = {}, {}
    for outcome, wanted in (("succeeded", True), ("failed", False)):
        chosen = [e for e in episodes if succeeded(e) == wanted]
        if not chosen:
            continue
        parts = [open_loop(algorithm, episode, horizon, every, estimators) for episode in chosen]
        values = [part.pop("value") for part in parts]
        joined = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        windows[outcome] = joined
        quiet = (joined["real_reward"] == 0).all(1)
        table[outcome] = {
            "episodes": float(len(chosen)),
            "obs error": float(joined["obs"].mean()),
            "reward error": float(np.abs(joined["reward"] - joined["real_reward"]).mean()),
            "phantom reward": float(joined["reward"][quiet].max(1).mean()) if quiet.any() else 0.0,
            "u": float(joined["u"].mean()),
            "alpha*u": float(alpha * joined["u"].mean()),
            "return grad": float(joined["return_grad"].mean()),
            "prior grad": float(joined["prior_grad"].mean()),
            "actor reward": float(joined["actor_reward"].mean()),
            "actor u": float(joined["actor_u"].mean()),
            **{f"V@{step}": mean_value_at(values, step) for step in value_steps},
        }
    return {"outcomes": table, "estimators": estimator_calibration(windows, list(estimators))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="online run folders")
    parser.add_argument("--horizon", type=int, default=15, help="open-loop steps per window")
    parser.add_argument("--every", type=int, default=25, help="a window starts every N steps")
    parser.add_argument(
        "--value-steps", type=int, nargs="+", default=[0, 25, 50, 100], help="V@t columns"
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=[],
        help="registered uncertainty names to compare with the model's error, or all",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/moto_model_check.json")
    )
    args = parser.parse_args()
    registry = load_plugins().registry
    names = registry.names("uncertainty") if args.estimators == ["all"] else args.estimators
    estimators = {name: registry.build("uncertainty", {"name": name}) for name in names}
    columns = [*COLUMNS, *(f"V@{step}" for step in args.value_steps)]
    print(f"{'run':<40}{'outcome':>10}" + "".join(f"{name:>16}" for name in columns))
    results = {}
    for run_dir in args.runs:
        results[str(run_dir)] = check(
            run_dir, args.horizon, args.every, args.value_steps, estimators
        )
        for outcome, row in results[str(run_dir)]["outcomes"].items():
            cells = [f"{row['episodes']:>16.0f}"] + [f"{row[name]:>16.4f}" for name in columns[1:]]
            print(f"{run_dir.name:<40}{outcome:>10}" + "".join(cells), flush=True)
    if estimators:
        header = f"{'estimator':>16}{'spearman(u, obs error)':>26}{'failed/succeeded':>20}"
        print(f"\n{'run':<40}{header}")
        for run_dir, result in results.items():
            for name, row in result["estimators"].items():
                cells = f"{row['spearman']:>26.3f}{row['failed/succeeded']:>20.2f}"
                print(f"{Path(run_dir).name:<40}{name:>16}" + cells)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
