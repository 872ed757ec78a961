"""PETS on mbrl-lib's continuous cart-pole: this framework's PETS against a PETS loop written
directly on mbrl-lib's own classes (as ``mbrl.algorithms.pets`` does) and against random
actions; same env, seeds, hyper-parameters and episode budget. Prints the return of every
episode (mean over seeds) with each arm's wall time, and writes the figures to JSON.

    python benchmarks/pets_cartpole.py --episodes 12 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import mbrl.models
import mbrl.planning
import mbrl.util.common
import numpy as np
import omegaconf
import torch
from omegaconf import DictConfig

from framework.compose import compose_config
from framework.plugins import load_plugins
from framework.runner import run_experiment
from framework.seeding import seed_everything


def ours(cfg: DictConfig) -> list[float]:
    with tempfile.TemporaryDirectory() as run_dir:
        run_experiment(cfg, Path(run_dir))
        with open(Path(run_dir) / "episodes.csv") as file:
            return [float(row["return"]) for row in csv.DictReader(file) if row["random"] == "0.0"]


def random_actions(cfg: DictConfig) -> list[float]:
    env = load_plugins().registry.build("env", cfg.env).make(cfg.seed)
    returns = []
    for _ in range(cfg.algo.episodes):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return returns


def mbrl_lib(cfg: DictConfig) -> list[float]:
    """PETS in the shape of ``mbrl.algorithms.pets.train``, on mbrl-lib's own classes."""
    factory = load_plugins().registry.build("env", cfg.env)
    env = factory.make(cfg.seed)
    seed_everything(cfg.seed)
    dyn, planner = cfg.dynamics, cfg.planner
    mbrl_cfg = omegaconf.OmegaConf.create(
        {
            "dynamics_model": {
                "_target_": "mbrl.models.GaussianMLP",
                # hydra 1.3 would instantiate the nested activation eagerly; GaussianMLP does it.
                "_recursive_": False,
                "device": "cpu",
                "num_layers": dyn.num_layers,
                "ensemble_size": dyn.ensemble_size,
                "hid_size": dyn.hidden_size,
                "deterministic": False,
                "propagation_method": "random_model",
                "learn_logvar_bounds": False,
                "activation_fn_cfg": {"_target_": "torch.nn.SiLU"},
            },
            "algorithm": {
                "learned_rewards": False,
                "target_is_delta": True,
                "normalize": True,
                "normalize_double_precision": True,
            },
            "overrides": {
                "model_batch_size": dyn.batch_size,
                "validation_ratio": dyn.validation_ratio,
                "num_epochs_train_model": dyn.epochs,
                "patience": dyn.patience,
                "num_steps": cfg.algo.initial_random_steps
                + cfg.algo.episodes * cfg.env.max_episode_steps,
            },
        }
    )
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = mbrl.util.common.create_one_dim_tr_model(mbrl_cfg, obs_shape, act_shape)
    buffer = mbrl.util.common.create_replay_buffer(
        mbrl_cfg,
        obs_shape,
        act_shape,
        rng=rng,
        obs_type=np.double,
        action_type=np.double,
        reward_type=np.double,
    )
    mbrl.util.common.rollout_agent_trajectories(
        env,
        cfg.algo.initial_random_steps,
        mbrl.planning.RandomAgent(env),
        {},
        replay_buffer=buffer,
    )
    model_env = mbrl.models.ModelEnv(
        env, model, factory.termination_fn, factory.reward_fn, generator=generator
    )
    trainer = mbrl.models.ModelTrainer(
        model, optim_lr=dyn.learning_rate, weight_decay=dyn.weight_decay
    )
    agent_cfg = omegaconf.OmegaConf.create(
        {
            "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
            "_recursive_": False,  # the agent fills the optimiser's bounds, then builds it
            "action_lb": "???",
            "action_ub": "???",
            "planning_horizon": cfg.algo.horizon,
            "replan_freq": 1,
            "verbose": False,
            "optimizer_cfg": {
                "_target_": "mbrl.planning.CEMOptimizer",
                "num_iterations": planner.num_iterations,
                "elite_ratio": planner.elite_ratio,
                "population_size": planner.population_size,
                "alpha": planner.alpha,
                "lower_bound": "???",
                "upper_bound": "???",
                "return_mean_elites": False,
                "device": "cpu",
            },
        }
    )
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(
        model_env, agent_cfg, num_particles=cfg.algo.particles
    )
    returns, env_steps = [], 0
    for _ in range(cfg.algo.episodes):
        obs, _ = env.reset()
        agent.reset()
        total, done = 0.0, False
        while not done:
            if env_steps % cfg.algo.train_every_steps == 0:
                mbrl.util.common.train_model_and_save_model_and_data(
                    model, trainer, mbrl_cfg.overrides, buffer, work_dir=None
                )
            obs, reward, terminated, truncated, _ = mbrl.util.common.step_env_and_add_to_buffer(
                env, obs, agent, {}, buffer
            )
            total, done, env_steps = total + reward, terminated or truncated, env_steps + 1
        returns.append(total)
    return returns


ARMS = {"random": random_actions, "ours": ours, "mbrl-lib": mbrl_lib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pets_cartpole.json"))
    args = parser.parse_args()
    results: dict[str, dict] = {}
    arms = {arm: ARMS[arm] for arm in args.arms}
    for arm, run in arms.items():
        per_seed, wall = [], []
        for seed in args.seeds:
            cfg = compose_config(
                [
                    "+algo=pets",
                    f"seed={seed}",
                    f"algo.episodes={args.episodes}",
                    "progress=false",
                    "tensorboard=false",
                ]
            )
            start = time.perf_counter()
            per_seed.append(run(cfg))
            wall.append(time.perf_counter() - start)
            print(f"{arm:>9} seed {seed}: {per_seed[-1]}  ({wall[-1]:.0f} s)", flush=True)
        results[arm] = {"returns": per_seed, "wall_seconds": wall}
    print(f"\nPETS on cartpole_continuous, mean return over seeds {args.seeds}")
    print(f"{'episode':>7} " + " ".join(f"{arm:>9}" for arm in arms))
    for episode in range(args.episodes):
        means = [np.mean([r[episode] for r in results[arm]["returns"]]) for arm in arms]
        print(f"{episode + 1:>7} " + " ".join(f"{m:>9.1f}" for m in means))
    print(
        f"{'wall s':>7} " + " ".join(f"{np.mean(results[a]['wall_seconds']):>9.0f}" for a in arms)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"episodes": args.episodes, "seeds": args.seeds, **results}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
