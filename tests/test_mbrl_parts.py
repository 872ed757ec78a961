"""The mbrl-lib parts we use, installed with --no-deps beside gymnasium 1.x and hydra 1.3,
work: GaussianMLP ensembles train and predict, CEM/iCEM/MPPI optimise, its env steps."""

import numpy as np
import pytest
import torch

from framework.library.envs import MbrlEnvFactory
from framework.library.gaussian_ensemble import GaussianMLPEnsemble
from framework.library.planners import CEMPlanner, ICEMPlanner, MPPIPlanner


def linear_system(n: int, seed: int = 0):
    """s' = s + 0.1 a with a little noise; reward = first state coordinate."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3))
    action = rng.uniform(-1, 1, size=(n, 2))
    next_obs = obs + 0.1 * np.concatenate([action, action[:, :1]], axis=1)
    next_obs += 0.01 * rng.normal(size=next_obs.shape)
    return obs, action, next_obs, obs[:, 0].copy()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = GaussianMLPEnsemble(
        3,
        2,
        learns_reward=True,
        ensemble_size=4,
        hidden_size=64,
        num_layers=3,
        epochs=60,
        batch_size=64,
        learning_rate=1e-3,
    )
    losses = model.fit(*linear_system(600))
    return model, losses


def test_gaussian_mlp_ensemble_learns_a_linear_system(trained):
    model, losses = trained
    assert losses[-1] < losses[0] - 1.0
    obs, action, next_obs, reward = linear_system(200, seed=1)
    with torch.no_grad():
        prediction = model.predict(torch.tensor(obs).float(), torch.tensor(action).float())
    assert prediction.mean.shape == (4, 200, 4)
    mean = prediction.mean.mean(0).numpy()
    copy_error = np.mean((obs - next_obs) ** 2)
    assert np.mean((mean[:, :3] - next_obs) ** 2) < 0.1 * copy_error
    assert np.mean((mean[:, 3] - reward) ** 2) < 0.1 * np.var(reward)


def test_member_slices_match_shared_batch(trained):
    model, _ = trained
    obs, action, _, _ = linear_system(8, seed=2)
    state, act = torch.tensor(obs).float(), torch.tensor(action).float()
    with torch.no_grad():
        shared = model.predict(state, act)
        sliced = model.predict(state.expand(4, -1, -1), act.expand(4, -1, -1))
    torch.testing.assert_close(shared.mean, sliced.mean)
    torch.testing.assert_close(shared.var, sliced.var)


def test_default_loss_is_the_gaussian_nll(trained):
    model, _ = trained
    obs, action, next_obs, reward = linear_system(16, seed=3)
    state, act = torch.tensor(obs).float(), torch.tensor(action).float()
    target = torch.tensor(np.concatenate([next_obs, reward[:, None]], axis=1)).float()
    with torch.no_grad():
        p = model.predict(state, act)
        by_hand = 0.5 * (torch.log(2 * torch.pi * p.var) + (target - p.mean) ** 2 / p.var)
        torch.testing.assert_close(model.loss(state, act, target), by_hand.mean())


def test_state_dict_round_trip_keeps_normaliser(trained):
    model, _ = trained
    copy = GaussianMLPEnsemble(
        3, 2, learns_reward=True, ensemble_size=4, hidden_size=64, num_layers=3
    )
    copy.load_state_dict(model.state_dict())
    obs, action, _, _ = linear_system(8, seed=4)
    state, act = torch.tensor(obs).float(), torch.tensor(action).float()
    with torch.no_grad():
        torch.testing.assert_close(copy.predict(state, act).mean, model.predict(state, act).mean)


@pytest.mark.parametrize(
    ("planner_class", "params", "tolerance"),
    [
        (
            CEMPlanner,
            {"num_iterations": 5, "elite_ratio": 0.1, "population_size": 200, "alpha": 0.1},
            0.1,
        ),
        (
            ICEMPlanner,
            {
                "num_iterations": 5,
                "elite_ratio": 0.1,
                "population_size": 200,
                "population_decay_factor": 1.3,
                "colored_noise_exponent": 2.0,
                "keep_elite_frac": 0.3,
                "alpha": 0.1,
            },
            0.1,
        ),
        (
            MPPIPlanner,
            {
                "num_iterations": 10,
                "population_size": 200,
                "gamma": 10.0,
                "sigma": 0.5,
                "beta": 0.7,
            },
            0.25,
        ),
    ],
)
def test_planners_find_the_known_optimum(planner_class, params, tolerance):
    torch.manual_seed(0)
    target = torch.tensor([0.5, -0.3])
    planner = planner_class(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), horizon=4, **params)

    def objective(actions: torch.Tensor) -> torch.Tensor:
        assert actions.shape[1:] == (4, 2)
        return -((actions - target) ** 2).sum(dim=(1, 2))

    plan = planner.plan(objective)
    assert plan.shape == (4, 2)
    assert np.abs(plan - target.numpy()).max() < tolerance
    planner.reset()


def test_mbrl_cartpole_runs_under_gymnasium_time_limit():
    factory = MbrlEnvFactory("cartpole_continuous", max_episode_steps=30)
    env = factory.make(seed=0)
    obs, _ = env.reset(options={"ignored": True})
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        steps, done = steps + 1, terminated or truncated
    assert steps <= 30 and obs.shape == (4,)
    batch = torch.tensor(np.stack([obs, np.zeros(4)])).float()
    # The known termination: far from upright (first row, if terminated) vs upright.
    assert factory.termination_fn(torch.zeros(2, 1), batch)[1].item() is False
