"""What does a pre-trained MOTO world model's latent state keep of what cloning needs? For each
run folder given (a state-based ``phase=offline`` MOTO run), two measures:

- ``filter error``: the mean squared error of the decoded filtered state (the posterior mean,
  as acting filters) against the observation, in units of each dimension's spread in the
  offline data, on the run's offline episodes and on ``--unseen`` new scripted episodes of the
  same task (seeds from 1000: objects and goals the model never saw), over all dimensions and
  over MetaWorld's object (``obs[4:7]``) and goal (``obs[36:39]``) positions;
- ``cloned success``: fresh behaviour-cloning heads (the BC baseline's recipe: a Gaussian head,
  ``--updates`` Adam steps of 256 offline steps at learning rate 3e-4) fitted to the offline
  actions from each input below, then scored greedily over ``--episodes`` evaluation episodes
  (the run's own evaluation starts), beside the run's actor and behaviour prior:
  ``features`` (the filtered state, as MOTO's actor reads it), ``stoch`` (its stochastic part),
  ``decoded`` (its decoding into an observation), ``embedding`` (the encoder's output, no
  filtering) and ``observation`` (the normalised observation, as BC reads it).

Heads on what the filter passes through clone worse than heads on the observation when the
filter places unseen objects and goals poorly (docs/moto_experiments.md, "What the latent state
loses"); ``algo.policy_input=observation`` lets MOTO's actor and prior read the observation.

    python benchmarks/moto_feature_cloning.py runs/box-close_offline ... [--episodes 30] \\
        [--updates 3000] [--unseen 10] [--threads 1]
    # prints a table, writes benchmarks/results/moto_feature_cloning.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from framework.data.collect import collect
from framework.data.format import load_dataset
from framework.evaluation import evaluate
from framework.interfaces import Policy
from framework.library.actor_critic import BehaviourPrior, TanhGaussianActor
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.library.rssm import LatentState, WorldModel
from framework.phases import EVAL_SEED_OFFSET
from framework.runner import load_trained

INPUTS = ("features", "stoch", "decoded", "embedding", "observation")
PARTS = {"all": slice(None), "object": slice(4, 7), "goal": slice(36, 39)}  # MetaWorld v3 state
UNSEEN_SEED = 1000


@torch.no_grad()
def filter_step(
    world_model: WorldModel, state: LatentState | None, previous: torch.Tensor, obs: torch.Tensor
) -> tuple[LatentState, dict[str, torch.Tensor]]:
    """One step of the deterministic filter (posterior mean) on raw ``obs`` ``(1, O)`` after
    ``previous`` ``(1, A)``; returns the new state and every input of :data:`INPUTS`."""
    embedding = world_model.embed(obs)
    state = world_model.rssm.observe_step(state, previous, embedding, sample=False)
    features = state.features
    inputs = {
        "features": features,
        "stoch": state.stoch,
        "decoded": world_model.decoder(features),
        "embedding": embedding,
        "observation": world_model.reconstruction_target(obs),
    }
    return state, inputs


def filtered_inputs(
    world_model: WorldModel, episode: Mapping[str, np.ndarray], obs_key: str
) -> dict[str, torch.Tensor]:
    """Every input of :data:`INPUTS` at each step of ``episode`` an action was taken at,
    ``(T, ·)``, filtered as acting filters."""
    obs = torch.as_tensor(episode[obs_key])
    actions = torch.as_tensor(episode["action"], dtype=torch.float32)
    state, previous, rows = None, torch.zeros(1, actions.shape[-1]), []
    for t in range(len(actions)):
        state, inputs = filter_step(world_model, state, previous, obs[t : t + 1])
        rows.append(inputs)
        previous = actions[t : t + 1]
    return {name: torch.cat([row[name] for row in rows]) for name in INPUTS}


def filter_error(inputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean squared ``decoded − observation`` over the steps of ``inputs``, per :data:`PARTS`."""
    squared = torch.cat([(row["decoded"] - row["observation"]) ** 2 for row in inputs])
    return {part: float(squared[:, columns].mean()) for part, columns in PARTS.items()}


class HeadOnInput(Policy):
    """Greedy: ``head``'s mode at one input of :data:`INPUTS`, filtering all the while."""

    def __init__(
        self,
        world_model: WorldModel,
        head: BehaviourPrior | TanhGaussianActor,
        name: str,
        action_dim: int,
    ) -> None:
        self.world_model, self.head, self.name, self.action_dim = (
            world_model,
            head,
            name,
            action_dim,
        )
        self.reset()

    def reset(self) -> None:
        self.state, self.previous = None, torch.zeros(1, self.action_dim)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        observation = torch.as_tensor(np.asarray(obs)).unsqueeze(0)
        self.state, inputs = filter_step(self.world_model, self.state, self.previous, observation)
        self.previous = self.head.mode(inputs[self.name])
        return self.previous.squeeze(0).numpy().astype(np.float32)


def cloned_head(
    inputs: torch.Tensor, actions: torch.Tensor, hidden_dim: int, updates: int, seed: int
) -> BehaviourPrior:
    """A Gaussian head fitted by maximum likelihood to ``actions`` at ``inputs`` (BC's
    recipe)."""
    torch.manual_seed(seed)
    head = BehaviourPrior(inputs.shape[-1], actions.shape[-1], hidden_dim, 2)
    optimiser = torch.optim.Adam(head.parameters(), 3e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(updates):
        rows = torch.randint(len(inputs), (256,), generator=generator)
        loss = head.nll(inputs[rows], actions[rows])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return head


def unseen_episodes(task: str, count: int, max_steps: int) -> list[dict[str, np.ndarray]]:
    """``count`` new scripted episodes of MetaWorld ``task`` (noise 0.1, seeds from 1000)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "unseen"
        collect(task, count, 0.1, "state", out, seed=UNSEEN_SEED, max_episode_steps=max_steps)
        return [
            {"obs.state": e["obs.state"], "action": e["action"]} for e in load_dataset(out).episodes
        ]


def check(run_dir: Path, episodes: int, updates: int, unseen: int) -> dict[str, dict[str, float]]:
    """Both measures (see the module docstring) for the run in ``run_dir``."""
    algorithm = load_trained(run_dir)
    if not isinstance(algorithm, LatentOfflineToOnline) or algorithm.obs_key != "obs.state":
        raise SystemExit(f"{run_dir}: not a state-based run of a latent-model agent")
    agent, cfg = algorithm.agent, algorithm.context.cfg
    if agent.prior is None or agent.policy_reads_observation:
        raise SystemExit(f"{run_dir}: needs a MOTO run whose actor reads the latent state")
    world_model, key = agent.world_model, algorithm.obs_key
    offline = algorithm.observed.offline_episodes(algorithm.data_settings)
    seen = [filtered_inputs(world_model, episode, key) for episode in offline]
    new = unseen_episodes(cfg.env.task, unseen, cfg.env.max_episode_steps)
    results: dict[str, dict[str, float]] = {
        "filter error, offline": filter_error(seen),
        "filter error, unseen": filter_error([filtered_inputs(world_model, e, key) for e in new]),
        "cloned success": {},
    }
    actions = torch.cat([torch.as_tensor(e["action"], dtype=torch.float32) for e in offline])
    heads = {"run's actor": ("features", agent.actor), "run's prior": ("features", agent.prior)}
    for name in tqdm(INPUTS, desc=f"{run_dir.name}: cloning heads"):
        inputs = torch.cat([rows[name] for rows in seen])
        hidden = cfg.algo.actor.hidden_dim
        heads[name] = (name, cloned_head(inputs, actions, hidden, updates, cfg.seed))
    # One evaluation call per head: the env is made with the first seed and its episodes
    # reset from the next ones, as the run's evaluations do. A call per episode makes each env
    # with another seed, and the episodes differ (box-close seed 0's prior: 0.37 against 0.23).
    for label, (name, head) in tqdm(heads.items(), desc=f"{run_dir.name}: scoring heads"):
        policy = HeadOnInput(world_model, head, name, actions.shape[-1])
        scores = evaluate(policy, algorithm.env_factory, episodes, cfg.seed + EVAL_SEED_OFFSET)
        results["cloned success"][label] = scores["success_rate"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="MOTO phase=offline run folders")
    parser.add_argument("--episodes", type=int, default=30, help="evaluation episodes per head")
    parser.add_argument("--updates", type=int, default=3000, help="Adam steps per cloned head")
    parser.add_argument("--unseen", type=int, default=10, help="new scripted episodes")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1, as framework runs)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/moto_feature_cloning.json")
    )
    args = parser.parse_args()
    # torch's default (a thread per core) beside other runs made this many times slower.
    torch.set_num_threads(args.threads)
    table = {}
    for run_dir in args.runs:
        row = table[str(run_dir)] = check(run_dir, args.episodes, args.updates, args.unseen)
        print(f"{run_dir.name}")
        for measure in ("filter error, offline", "filter error, unseen"):
            cells = "".join(f"{part} {value:.4f}  " for part, value in row[measure].items())
            print(f"  {measure:<24}{cells}")
        cells = "".join(f"{label} {value:.2f}  " for label, value in row["cloned success"].items())
        print(f"  {'cloned success':<24}{cells}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
