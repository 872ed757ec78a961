"""MOTO: composition by config, phases and checkpoints, the penalty and the regulariser."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from framework.compose import compose_config
from framework.data import DatasetWriter
from framework.errors import TerminationRequested, UserInputError
from framework.library.actor_critic import (
    BehaviourPrior,
    Critic,
    TanhGaussianActor,
    reinforce_objective,
)
from framework.library.encoders import IdentityEncoder
from framework.library.latent_agent import (
    ImaginationSettings,
    LatentAgent,
    OptimiserSettings,
    build_world_model,
    episode_features,
    episode_policy_inputs,
)
from framework.library.returns import replay_lambda_returns
from framework.library.rssm import LatentEnsembleHeads, LatentState
from framework.library.uncertainty import EnsembleDisagreement
from framework.metrics import RunLogger, read_log
from framework.phases import PhaseRunner
from framework.runner import build_algorithm, load_trained, run_experiment
from framework_moto.moto import MOTO

SMOKE = ["+algo=moto", "+experiment=smoke", "progress=false", "tensorboard=false"]


def _config(data_cache: str, *overrides: str):
    return compose_config([*SMOKE, f"algo.data.cache={data_cache}", *overrides])


def _moto(cfg, run_dir: Path) -> MOTO:
    """A MOTO instance as the runner builds it, without running it."""
    return build_algorithm(cfg, run_dir, RunLogger(run_dir, tensorboard=False))


# ------------------------------------------------------------------ composition and phases


def test_smoke_preset_runs_both_phases_from_the_command_line(framework_cli, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run", *SMOKE, f"algo.data.cache={data_cache}", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = read_log(run_dir / "evaluation.csv")
    assert list(evaluations[0])[:4] == ["step", "episode", "success", "seed"]
    # One evaluation after the offline phase, then one after each of the 2 online episodes.
    assert [row["episode"] for row in evaluations] == ["0", "1", "2"]
    assert [row["offline"] for row in evaluations] == ["1", "0", "0"]
    assert len(read_log(run_dir / "offline.csv")) == 5  # 20 updates, logged every 5 and the last
    # Fine-tuning's metrics, one row per online episode (the mean over its 5 updates), with
    # the online α = 1 · 1 and β = 1 · 10 that the imagination used.
    online = read_log(run_dir / "online.csv")
    assert [(row["episode"], row["step"]) for row in online] == [("1", "25"), ("2", "30")]
    assert {(float(row["alpha"]), float(row["beta"])) for row in online} == {(1.0, 10.0)}
    assert all(float(row["imagined_uncertainty"]) > 0 for row in online)
    manifest = json.loads((run_dir / "online_episodes" / "manifest.json").read_text())
    assert [entry["length"] for entry in manifest["episodes"]] == [30, 30]
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"offline_success", "final_success", "best_success", "online_episodes"}
    assert results["online_episodes"] == 2
    assert (run_dir / "checkpoint.pt").is_file()


def test_offline_checkpoint_loads_exactly_and_reproduces_actions(tmp_path, data_cache):
    offline_dir = tmp_path / "offline"
    cfg = _config(data_cache, "phase=offline")
    trained = _moto(cfg, offline_dir)
    trained.run()
    assert [row["offline"] for row in read_log(offline_dir / "evaluation.csv")] == ["1"]
    # State observations are standardised by the offline data's statistics.
    offline = np.concatenate([e["obs.state"] for e in trained.offline_episodes])
    normaliser = trained.agent.world_model.normaliser
    np.testing.assert_allclose(normaliser.mean.numpy(), offline.mean(0), atol=1e-5)
    fine_tuning = _config(
        data_cache, "phase=online", f"init={offline_dir}", "algo.optim.actor_lr=1e-5"
    )
    restored = _moto(fine_tuning, tmp_path / "b")
    restored.load(str(offline_dir))
    for key, value in trained.agent.state_dict().items():
        assert torch.equal(value, restored.agent.state_dict()[key]), key
    # Adam's moments come from the checkpoint, the learning rates from the new run's config.
    for name, optimiser in trained.agent.optimisers.items():
        loaded = restored.agent.optimisers[name]
        pairs = zip(
            optimiser.param_groups[0]["params"], loaded.param_groups[0]["params"], strict=True
        )
        for saved, restored_param in pairs:
            moments, restored_moments = optimiser.state[saved], loaded.state[restored_param]
            assert torch.equal(moments["exp_avg"], restored_moments["exp_avg"]), name
        expected = 1e-5 if name == "actor" else optimiser.param_groups[0]["lr"]
        assert loaded.param_groups[0]["lr"] == expected, name
    env = trained.env_factory.make(seed=3)
    first, second = trained.policy(explore=False), restored.policy(explore=False)
    obs, _ = env.reset(seed=3)
    for _ in range(10):
        action = first.act(obs)
        np.testing.assert_array_equal(action, second.act(obs))
        obs, *_ = env.step(action)
    # And the online phase alone runs from that folder.
    online_dir = tmp_path / "online"
    results = run_experiment(_config(data_cache, "phase=online", f"init={offline_dir}"), online_dir)
    assert results["online_episodes"] == 2
    rows = read_log(online_dir / "evaluation.csv")
    assert [(row["episode"], row["offline"]) for row in rows] == [
        ("0", "1"),
        ("1", "0"),
        ("2", "0"),
    ]
    # Its first evaluation is the pre-trained agent's again (same weights, same evaluation
    # seeds), so the online folder alone holds the whole learning curve.
    pretrained = read_log(offline_dir / "evaluation.csv")[0]
    assert rows[0]["mean_return"] == pretrained["mean_return"]
    assert float(rows[0]["success"]) == float(pretrained["success"]) == results["offline_success"]
    # The benchmarks' way in: the finished run rebuilt from its folder, with its final weights.
    analysed = load_trained(online_dir)
    saved = torch.load(online_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert analysed.agent.state_dict().keys() == saved["agent"].keys()
    for key, value in analysed.agent.state_dict().items():
        assert torch.equal(value, saved["agent"][key]), key


def test_online_phase_without_a_checkpoint_fails_clearly(tmp_path, data_cache):
    with pytest.raises(Exception, match="init=<checkpoint"):
        run_experiment(_config(data_cache, "phase=online"), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_missing_or_corrupt_init_checkpoint_fails_clearly(framework_cli, tmp_path, data_cache):
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for init, message in [(tmp_path / "nowhere", "does not exist"), (corrupt, "is corrupt")]:
        result = framework_cli(
            "run",
            *SMOKE,
            f"algo.data.cache={data_cache}",
            "phase=online",
            f"init={init}",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["uncertainty=none"], {"uncertainty.name": "none"}),
        (["uncertainty=total_variance"], {"uncertainty.name": "total_variance"}),
        (["uncertainty=max_aleatoric"], {"uncertainty.name": "max_aleatoric"}),
        (["uncertainty=max_pairwise"], {"uncertainty.name": "max_pairwise"}),
        (["algo.alpha=0.5", "algo.beta=0.3", "algo.horizon=3"], {"algo.horizon": 3}),
        (["+algo=moto_no_uncertainty"], {"algo.alpha": 0.0, "algo.beta": 1.0}),
        (["+algo=moto_no_policy_reg"], {"algo.alpha": 1.0, "algo.beta": 0.0}),
        (["+algo=moto_from_prior"], {"algo.policy_input": "observation"}),
        ([], {"algo.cross_episode_windows": True}),
        (["algo.cross_episode_windows=false"], {"algo.cross_episode_windows": False}),
    ],
)
def test_parts_and_ablations_swap_by_config(tmp_path, data_cache, overrides, expected):
    cfg = _config(data_cache, *overrides)
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value
    assert cfg.algo.name == "moto" and cfg.algo.offline.updates == 20  # smoke preset applied
    results = run_experiment(cfg, tmp_path)
    assert results["online_episodes"] == 2
    losses = [float(row["actor_loss"]) for row in read_log(tmp_path / "offline.csv")]
    assert np.isfinite(losses).all()


def test_cross_episode_windows_reach_the_offline_and_online_replays(tmp_path, data_cache):
    moto = _moto(_config(data_cache), tmp_path)
    offline, _ = moto._offline_replay()
    runner = PhaseRunner.for_run(moto, moto.env_factory, moto.context)
    online = runner.online_replay(1000, offline.sequence_length, offline.cross_episodes)
    assert offline.cross_episodes and online.cross_episodes
    # A window may start at any stored row whose window ends inside the stream of stored
    # episodes (the smoke preset's 2 episodes of 30 steps, windows of 10 rows), not only where
    # it fits inside its episode (2 * (31 - 10 + 1)).
    assert offline.num_windows == 2 * 31 - 10 + 1


def test_the_acting_average_follows_the_live_weights_at_its_rate_and_is_checkpointed(
    tmp_path, data_cache
):
    live_only = _moto(_config(data_cache), tmp_path / "live")
    assert live_only.acting is None
    assert live_only.policy(explore=False).actor is live_only.agent.actor
    moto = _moto(_config(data_cache, "algo.acting_polyak_rate=0.25"), tmp_path / "averaged")
    replay, _ = moto._offline_replay()
    # Before any update the policy acts with the live weights.
    assert moto.policy(explore=False).actor is moto.agent.actor
    expected: dict[str, torch.Tensor] = {}
    for _ in range(3):
        moto.train_step(replay.sample(4), "offline")
        for name, value in moto.agent.actor.state_dict().items():
            # The first update copies the live weights, later ones move 1/4 of the way.
            previous = expected.get(name, value)
            expected[name] = previous + 0.25 * (value - previous)
    policy = moto.policy(explore=False)
    averaged = policy.actor.state_dict()
    assert policy.actor is not moto.agent.actor
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)
        assert not torch.equal(averaged[name], moto.agent.actor.state_dict()[name]), name
    # The average is saved and restored with the agent.
    restored = _moto(_config(data_cache, "algo.acting_polyak_rate=0.25"), tmp_path / "restored")
    restored.restore(moto.checkpoint_state())
    for name, value in moto.acting.state_dict().items():
        assert torch.equal(value, restored.acting.state_dict()[name]), name
    with pytest.raises(Exception, match=r"acting_polyak_rate must lie in \[0, 1\]"):
        _moto(_config(data_cache, "algo.acting_polyak_rate=2"), tmp_path / "bad")


def test_the_acting_average_rate_doubles_with_online_episodes_until_the_live_weights_act(
    tmp_path, data_cache
):
    overrides = ("algo.acting_polyak_rate=0.25", "algo.acting_polyak_doubling_episodes=2")
    moto = _moto(_config(data_cache, *overrides), tmp_path / "doubling")
    replay, _ = moto._offline_replay()

    def averaged_after_update() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The acting actor's weights before and after one update."""
        before = copy.deepcopy(moto.policy(explore=False).actor.state_dict())
        moto.train_step(replay.sample(4), "online")
        return before, moto.policy(explore=False).actor.state_dict()

    moto.train_step(replay.sample(4), "offline")  # the first update copies the live weights
    # Two online episodes stored: one doubling, rate 0.5; four: rate 1, the live weights.
    for episodes, rate in ((2, 0.5), (4, 1.0)):
        moto._online_episode_stored(episodes)
        before, after = averaged_after_update()
        live = moto.agent.actor.state_dict()
        for name, value in after.items():
            torch.testing.assert_close(value, before[name] + rate * (live[name] - before[name]))
    assert all(torch.equal(value, live[name]) for name, value in after.items())
    # MOTO's own hook still runs: the online β is in force.
    assert moto.agent.imagination.beta == pytest.approx(10.0)
    with pytest.raises(Exception, match="acting_polyak_doubling_episodes must be >= 0"):
        _moto(_config(data_cache, "algo.acting_polyak_doubling_episodes=-1"), tmp_path / "bad")


def test_the_lookahead_acts_with_the_candidate_whose_imagined_return_is_highest(
    tmp_path, data_cache
):
    overrides = (
        "algo.lookahead_candidates=16",
        "algo.lookahead_noise=0.3",
        "algo.lookahead_particles=2",
    )
    moto = _moto(_config(data_cache, *overrides), tmp_path / "lookahead")
    calls: list[dict[str, torch.Tensor]] = []
    imagine = moto.agent.imagine

    def recorded(start: LatentState, first_action=None, action_offset=None):
        states, actions, rollout = imagine(start, first_action, action_offset)
        calls.append(
            {
                "start": start.features,
                "first": first_action,
                "offset": action_offset,
                "actions": actions,
                "returns": rollout.returns[:, 0],
            }
        )
        return states, actions, rollout

    moto.agent.imagine = recorded
    policy = moto.policy(explore=False)
    env = moto.env_factory.make(seed=5)
    obs, _ = env.reset(seed=5)
    for _ in range(5):
        action = policy.act(obs)
        call = calls[-1]
        # 16 candidates, 2 particles each, all from the filtered state.
        assert call["first"].shape == (32, action.shape[0])
        assert (call["start"] == call["start"][0]).all()
        first, offset = call["first"][::2], call["offset"][::2]
        assert torch.equal(call["first"][1::2], first)
        # The actor's own action is candidate 0 (offset 0); the others add their offset to it
        # and to every later imagined action, all inside the action box.
        proposal = moto.agent.actor.mode(call["start"][:1])[0]
        torch.testing.assert_close(first[0], proposal)
        assert torch.equal(offset[0], torch.zeros_like(offset[0])) and (offset[1:] != 0).all()
        inside = first.abs() < 0.99
        torch.testing.assert_close((first - proposal)[inside], offset[inside])
        assert call["actions"].abs().max() < 1
        returns = call["returns"].view(16, 2).mean(1)
        np.testing.assert_allclose(action, first[returns.argmax()].numpy())
        obs, *_ = env.step(action)
    assert len(calls) == 5
    # The search takes a candidate other than the actor's at some steps.
    assert any(call["returns"].view(16, 2).mean(1).argmax() != 0 for call in calls)
    for bad, message in (
        ("algo.lookahead_candidates=1", "algo.lookahead_candidates must be >= 2 .*; got 1"),
        ("algo.lookahead_noise=0", "algo.lookahead_noise must be > 0 .*; got 0"),
        ("algo.lookahead_particles=0", "algo.lookahead_particles must be >= 1 .*; got 0"),
    ):
        with pytest.raises(UserInputError, match=message):
            _moto(_config(data_cache, *overrides, bad), tmp_path / "bad")
    with pytest.raises(UserInputError, match="cannot be combined with algo.acting_polyak_rate"):
        both = ("algo.lookahead_candidates=4", "algo.acting_polyak_rate=0.1")
        _moto(_config(data_cache, *both), tmp_path / "both")


def test_the_lookahead_can_collect_the_online_episodes_alone(tmp_path, data_cache):
    overrides = ("algo.lookahead_candidates=8", "algo.lookahead_evaluates=false")
    moto = _moto(_config(data_cache, *overrides), tmp_path / "explore_only")
    exploring, greedy = moto.policy(explore=True), moto.policy(explore=False)
    assert exploring.lookahead is moto.lookahead is not None
    assert greedy.lookahead is None
    # Evaluation acts with the actor's mode, as without a lookahead.
    env = moto.env_factory.make(seed=5)
    obs, _ = env.reset(seed=5)
    action = greedy.act(obs)
    proposal = moto.agent.actor.mode(greedy._state.features)[0]
    np.testing.assert_allclose(action, proposal.detach().numpy(), rtol=1e-6)


def test_the_exploration_std_scale_widens_the_exploring_actions_only(tmp_path, data_cache):
    overrides = ("algo.policy_input=observation", "algo.exploration_std_scale=4")
    moto = _moto(_config(data_cache, *overrides), tmp_path / "wide")
    exploring, greedy = moto.policy(explore=True), moto.policy(explore=False)
    env = moto.env_factory.make(seed=5)
    obs, _ = env.reset(seed=5)
    inputs = moto.agent.world_model.reconstruction_target(
        torch.as_tensor(obs["state"] if isinstance(obs, dict) else obs).unsqueeze(0)
    )
    actor = moto.agent.actor
    # The exploring policy draws from the actor with σ four times its own ...
    torch.manual_seed(3)
    action = exploring.act(obs)
    torch.manual_seed(3)
    widened = actor.sample(inputs, std_scale=4.0).action[0]
    torch.manual_seed(3)
    own = actor.sample(inputs).action[0]
    np.testing.assert_allclose(action, widened.detach().numpy(), rtol=1e-5)
    assert not np.allclose(action, own.detach().numpy(), atol=1e-3)
    # ... and evaluation still acts with the mode.
    np.testing.assert_allclose(greedy.act(obs), actor.mode(inputs)[0].detach().numpy(), rtol=1e-6)
    with pytest.raises(UserInputError, match="exploration_std_scale .* must be > 0"):
        _moto(_config(data_cache, "algo.exploration_std_scale=0"), tmp_path / "bad")


@pytest.mark.parametrize("online_successes", [False, True])
def test_the_prior_also_fits_successful_online_episodes_only_when_asked(
    tmp_path, data_cache, online_successes
):
    cfg = _config(data_cache, f"algo.prior.online_successes={online_successes}")
    moto = _moto(cfg, tmp_path)
    moto._offline_replay()
    writer = DatasetWriter(tmp_path / "online_episodes", {"seed": 0})
    failed, succeeded = dict(moto.offline_episodes[0]), dict(moto.offline_episodes[1])
    failed["success"] = np.zeros_like(failed["success"])
    succeeded["success"] = np.zeros_like(succeeded["success"])
    succeeded["success"][-1] = True
    writer.write(failed)
    writer.write(succeeded)
    offline = len(moto.offline_episodes)
    assert len(moto._prior_episodes("offline")) == offline
    online = moto._prior_episodes("online")
    assert len(online) == offline + online_successes
    if online_successes:
        np.testing.assert_array_equal(online[-1]["action"], succeeded["action"])
    # It is fitted on them: the features cover every step of every episode it is given.
    batch = moto._offline_replay()[0].sample(2)
    moto._prior_age = moto.prior_settings.refresh_every
    moto.train_step(batch, "online")
    steps = sum(len(episode["action"]) for episode in online)
    assert len(moto._prior_data[0]) == steps


def test_the_prior_can_fit_only_the_offline_successes_while_the_model_sees_all(
    tmp_path, data_cache
):
    cfg = _config(data_cache, "algo.prior.offline_successes_only=true")
    moto = _moto(cfg, tmp_path)
    replay, _ = moto._offline_replay()
    for index, episode in enumerate(moto.offline_episodes):
        episode["success"] = np.zeros_like(episode["success"])
        episode["success"][-1] = index % 2 == 1
    successes = moto.offline_episodes[1::2]
    assert [id(e) for e in moto._prior_episodes("offline")] == [id(e) for e in successes]
    moto._prior_age = moto.prior_settings.refresh_every
    moto.train_step(replay.sample(2), "offline")
    assert len(moto._prior_data[0]) == sum(len(e["action"]) for e in successes)
    # The world model's replay still holds every offline step.
    assert replay.num_steps == sum(len(e["action"]) for e in moto.offline_episodes)
    for episode in moto.offline_episodes:
        episode["success"][:] = False
    with pytest.raises(UserInputError, match="none of the 2 offline episodes reached success"):
        moto._prior_episodes("offline")


@pytest.mark.parametrize("experiment", ["smoke", "small"])
@pytest.mark.parametrize(
    "variant, changed",
    [
        ("moto_no_uncertainty", {"algo.alpha": 0.0}),
        ("moto_no_policy_reg", {"algo.beta": 0.0}),
        (
            "moto_from_prior",
            {
                "algo.policy_input": "observation",
                "algo.prior.online_successes": True,
                "algo.online.actor_from_prior": True,
                "algo.online.beta_scale": 100.0,
                "world_model.state_obs_std": 0.05,
            },
        ),
    ],
)
def test_variants_differ_from_moto_only_in_their_settings_under_every_preset(
    experiment, variant, changed
):
    """Without its own ``preset/<variant>_<experiment>.yaml`` a variant would silently run at
    the full default sizes beside MOTO's preset ones."""
    moto = compose_config(["+algo=moto", f"+experiment={experiment}"])
    varied = compose_config([f"+algo={variant}", f"+experiment={experiment}"])
    for key, value in changed.items():
        assert OmegaConf.select(varied, key) == value != OmegaConf.select(moto, key)
        OmegaConf.update(varied, key, OmegaConf.select(moto, key))
    assert varied == moto


def test_fine_tuning_schedule_scales_alpha_and_beta_from_the_offline_values(tmp_path, data_cache):
    cfg = _config(
        data_cache,
        "algo.alpha=0.5",
        "algo.beta=0.2",
        "algo.online.alpha_scale=0",
        "algo.online.beta_scale=10",
        "algo.online.beta_anneal_episodes=4",
    )
    moto = _moto(cfg, tmp_path)
    assert (moto.agent.imagination.alpha, moto.agent.imagination.beta) == (0.5, 0.2)
    for stored, beta in [(0, 2.0), (1, 1.5), (2, 1.0), (4, 0.0), (9, 0.0)]:
        moto.on_online_episode(stored)
        assert moto.agent.imagination.alpha == 0.0
        assert moto.agent.imagination.beta == pytest.approx(beta)
    assert moto.agent.imagination.horizon == cfg.algo.horizon  # the rest kept


def test_fine_tuning_can_start_the_actor_at_the_prior_once(tmp_path, data_cache):
    def pretrained(*overrides: str) -> MOTO:
        moto = _moto(_config(data_cache, "algo.acting_polyak_rate=0.25", *overrides), tmp_path)
        replay, _ = moto._offline_replay()
        for _ in range(2):
            moto.train_step(replay.sample(4), "offline")
        return moto

    def gap(moto: MOTO) -> float:
        """The largest |actor mode − prior mean| over random inputs."""
        agent = moto.agent
        inputs = torch.randn(64, agent.actor.net[0].in_features)
        with torch.no_grad():
            prior_mean = agent.prior.distribution(inputs).mean
            return float((agent.actor.mode(inputs) - prior_mean).abs().max())

    paper = pretrained()
    paper.on_online_episode(0)
    assert gap(paper) > 1e-3
    moto = pretrained("algo.online.actor_from_prior=true")
    assert moto.agent.optimisers["actor"].state
    moto.on_online_episode(0)
    assert gap(moto) < 1e-6
    assert not moto.agent.optimisers["actor"].state
    # The acting average restarts at the copied weights.
    assert moto.policy(explore=False).actor is moto.agent.actor
    replay, _ = moto._offline_replay()
    moto.train_step(replay.sample(4), "online")
    averaged = moto.policy(explore=False).actor.state_dict()
    for name, value in moto.agent.actor.state_dict().items():
        torch.testing.assert_close(averaged[name], value)
    # Later episodes leave the actor to fine-tuning.
    moto.on_online_episode(1)
    assert gap(moto) > 1e-6


def test_the_actor_started_at_the_prior_has_its_sigma_only_under_the_same_bounds(
    tmp_path, data_cache
):
    def sigmas(*overrides: str) -> tuple[torch.Tensor, torch.Tensor]:
        moto = _moto(_config(data_cache, "algo.online.actor_from_prior=true", *overrides), tmp_path)
        moto.on_online_episode(0)
        agent = moto.agent
        inputs = torch.randn(64, agent.actor.net[0].in_features)
        with torch.no_grad():
            return tuple(h.mean_and_log_std(inputs)[1].exp() for h in (agent.actor, agent.prior))

    actor, prior = sigmas()
    torch.testing.assert_close(actor, np.e**2 * prior ** (7 / 3))
    assert (actor - prior).abs().max() > 1e-2
    actor, prior = sigmas("algo.actor.log_std_min=-3", "algo.actor.log_std_max=0")
    torch.testing.assert_close(actor, prior)


# ------------------------------------------------------------ penalty and regulariser


def _agent(
    alpha: float, beta: float, horizon: int = 4, policy_input: str = "latent"
) -> LatentAgent:
    torch.manual_seed(0)
    heads = LatentEnsembleHeads(8, 2, 4, ensemble_size=5, hidden_dim=16)
    world_model = build_world_model(
        IdentityEncoder((3,)),
        heads,
        (3,),
        2,
        deter_dim=8,
        stoch_dim=4,
        hidden_dim=16,
        decoder_hidden_dim=16,
        reward_hidden_dim=16,
    )
    features = world_model.rssm.feature_dim
    policy_dim = 3 if policy_input == "observation" else features
    settings = ImaginationSettings(horizon, 1.0, 1.0, alpha, beta, policy_input=policy_input)
    return LatentAgent(
        world_model,
        TanhGaussianActor(policy_dim, 2, hidden_dim=16),
        Critic(features, hidden_dim=16),
        EnsembleDisagreement(),
        BehaviourPrior(policy_dim, 2, hidden_dim=16),
        settings,
        OptimiserSettings(),
    )


def _start(batch: int = 6) -> LatentState:
    generator = torch.Generator().manual_seed(1)
    return LatentState(torch.randn(batch, 8, generator=generator), torch.randn(batch, 4))


def test_episode_features_pair_each_action_with_the_state_it_was_taken_at():
    world_model = _agent(alpha=1.0, beta=1.0).world_model
    rng = np.random.default_rng(0)
    episodes = [
        {
            "obs.state": rng.normal(size=(length + 1, 3)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
        }
        for length in (6, 4, 6)
    ]
    torch.manual_seed(5)
    features, actions = episode_features(world_model, episodes, "obs.state", torch.device("cpu"))
    assert features.shape == (16, world_model.rssm.feature_dim) and actions.shape == (16, 2)
    # Episodes of equal length are filtered together: first both 6-step ones, then the other.
    expected = np.concatenate([episodes[0]["action"], episodes[2]["action"], episodes[1]["action"]])
    np.testing.assert_array_equal(actions.numpy(), expected)
    # The state action k was taken at has seen observation k and none after it.
    episodes[0]["obs.state"][3] += 1.0
    torch.manual_seed(5)
    changed, _ = episode_features(world_model, episodes, "obs.state", torch.device("cpu"))
    assert torch.equal(changed[:3], features[:3]) and torch.equal(changed[6:], features[6:])
    assert not torch.equal(changed[3], features[3])


def test_penalty_lowers_imagined_returns_by_exactly_alpha_times_uncertainty():
    start = _start()
    torch.manual_seed(2)
    _, _, plain = _agent(alpha=0.0, beta=0.0).imagine(start)
    torch.manual_seed(2)
    _, _, penalised = _agent(alpha=0.7, beta=0.0).imagine(start)
    torch.testing.assert_close(penalised.rewards, plain.rewards, rtol=0, atol=0)
    assert (penalised.uncertainty > 0).all()
    torch.testing.assert_close(penalised.penalised, plain.rewards - 0.7 * penalised.uncertainty)
    # γ = λ = 1: R_t = sum_{k >= t} r~_k + V(s_H), so the returns drop by 0.7 * sum_{k >= t} u_k.
    tail_uncertainty = penalised.uncertainty.flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(plain.returns - penalised.returns, 0.7 * tail_uncertainty)


def test_a_given_first_action_is_taken_and_the_returns_depend_on_it_alone_per_row():
    agent, start = _agent(alpha=1.0, beta=0.0), _start()
    first = torch.full((6, 2), 0.3, requires_grad=True)
    torch.manual_seed(4)
    _, actions, rollout = agent.imagine(start, first_action=first)
    assert torch.equal(actions[:, 0], first.detach())
    assert not torch.equal(actions[:, 1], actions[:, 0])  # the actor's own from step 1
    (gradient,) = torch.autograd.grad(rollout.returns[0].sum(), first)
    assert gradient[0].abs().sum() > 0 and (gradient[1:] == 0).all()
    # Without it, the same draws give the actor's first action instead.
    torch.manual_seed(4)
    _, own, _ = agent.imagine(start)
    assert not torch.equal(own[:, 0], first.detach())


def test_beta_zero_is_the_unregularised_actor_loss_and_beta_changes_it():
    start = _start()
    agent = _agent(alpha=1.0, beta=0.0)
    torch.manual_seed(3)
    loss_free, _, metrics = agent.actor_critic_losses(start)
    torch.manual_seed(3)
    _, _, rollout = agent.imagine(start)
    entropy_noise_free = metrics["policy_entropy"]
    expected = -rollout.returns.mean() - agent.imagination.entropy_scale * entropy_noise_free
    torch.testing.assert_close(loss_free, expected)
    assert metrics["behaviour_log_prob"] == 0.0
    agent.imagination = ImaginationSettings(horizon=4, gamma=1.0, lam=1.0, alpha=1.0, beta=0.5)
    torch.manual_seed(3)
    loss_regularised, _, metrics = agent.actor_critic_losses(start)
    assert metrics["behaviour_log_prob"] != 0.0
    # Same rollout, same entropy sample: the losses differ by exactly −β · mean log π_β.
    torch.testing.assert_close(
        loss_regularised - loss_free,
        torch.tensor(-0.5 * metrics["behaviour_log_prob"]),
    )


def test_reinforce_scores_the_rollout_by_log_probs_without_differentiating_the_model():
    start = _start()
    agent = _agent(alpha=1.0, beta=0.0)
    settings = dataclasses.replace(agent.imagination, entropy_scale=0.0)
    agent.imagination = dataclasses.replace(settings, actor_gradient="reinforce")
    torch.manual_seed(3)
    loss, _, _ = agent.actor_critic_losses(start)
    torch.manual_seed(3)
    with torch.no_grad():
        states, actions, rollout = agent.imagine(start)
    expected = -reinforce_objective(
        agent.actor.log_prob(states[:, :-1], actions),
        rollout.returns,
        agent.critic.target_value(states[:, :-1]),
    ).mean()
    torch.testing.assert_close(loss, expected)
    # The same draws give a different actor gradient when the returns are back-propagated.
    (reinforced,) = torch.autograd.grad(loss, agent.actor.net[0].weight)
    agent.imagination = settings
    torch.manual_seed(3)
    (pathwise,) = torch.autograd.grad(
        agent.actor_critic_losses(start)[0], agent.actor.net[0].weight
    )
    assert reinforced.abs().sum() > 0 and not torch.allclose(reinforced, pathwise)
    with pytest.raises(ValueError, match="actor_gradient must be one of dynamics, reinforce"):
        parts = (agent.world_model, agent.actor, agent.critic, agent.uncertainty, agent.prior)
        LatentAgent(
            *parts, dataclasses.replace(settings, actor_gradient="sarsa"), OptimiserSettings()
        )


def test_an_observation_reading_actor_learns_in_imagination_from_decoded_states():
    agent, start = _agent(alpha=1.0, beta=0.5, policy_input="observation"), _start()
    assert agent.policy_reads_observation
    torch.manual_seed(3)
    loss, value_loss, metrics = agent.actor_critic_losses(start)
    torch.manual_seed(3)
    states, actions, _ = agent.imagine(start)
    # The prior scores the actor's imagined actions at the decoded observations (O = 3)...
    decoded = agent.world_model.decoder(states[:, :-1])
    assert decoded.shape == (6, 4, 3)
    expected = agent.prior.log_prob(decoded, actions).mean()
    assert metrics["behaviour_log_prob"] == pytest.approx(float(expected.detach()))
    # ...and the actor's loss trains the actor through the frozen model, never the model.
    (loss + value_loss).backward()
    assert agent.actor.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in agent.world_model.parameters())
    with pytest.raises(ValueError, match="policy_input must be one of latent, observation"):
        parts = (agent.world_model, agent.actor, agent.critic, agent.uncertainty, agent.prior)
        settings = dataclasses.replace(agent.imagination, policy_input="pixels")
        LatentAgent(*parts, settings, OptimiserSettings())


def test_an_observation_reading_moto_fits_and_acts_on_the_normalised_observations(
    tmp_path, data_cache
):
    moto = _moto(_config(data_cache, "phase=offline", "algo.policy_input=observation"), tmp_path)
    moto.run()
    agent, cpu = moto.agent, torch.device("cpu")
    obs_dim = moto.observed.obs_shape[0]
    assert agent.actor.net[0].in_features == agent.prior.net[0].in_features == obs_dim
    # The prior's data: each offline observation an action was taken at, standardised.
    inputs, actions = episode_policy_inputs(agent, moto.offline_episodes, moto.obs_key, cpu)
    observations = np.concatenate([e[moto.obs_key][:-1] for e in moto.offline_episodes])
    normaliser = agent.world_model.normaliser
    expected = (observations - normaliser.mean.numpy()) / normaliser.std.numpy()
    np.testing.assert_allclose(inputs.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert len(actions) == len(inputs)
    # Acting: the actor's mode at the real observation, whatever the filtered latent state.
    env, policy = moto.env_factory.make(seed=3), moto.policy(explore=False)
    obs, _ = env.reset(seed=3)
    for _ in range(3):
        state = torch.as_tensor(obs).unsqueeze(0)
        with torch.no_grad():
            wanted = agent.actor.mode(agent.world_model.observation_target(state).float())
        action = policy.act(obs)
        np.testing.assert_allclose(action, wanted.squeeze(0).numpy(), rtol=1e-6)
        obs, *_ = env.step(action)
    assert policy._state is None  # no lookahead reads the latent state, so none is filtered
    with pytest.raises(UserInputError, match="policy_input observation reads vector"):
        _moto(_config(data_cache, "encoder=conv", "algo.policy_input=observation"), tmp_path)


def test_the_critic_replay_loss_regresses_values_onto_the_real_returns_only_when_weighted():
    torch.manual_seed(6)
    batch = {
        "obs": torch.randn(2, 6, 3),
        "action": torch.rand(2, 6, 2) * 2 - 1,
        "reward": torch.full((2, 6), 5.0),
        "is_first": torch.tensor([[True] + [False] * 5, [False] * 3 + [True] + [False] * 2]),
    }
    agent = _agent(alpha=0.0, beta=0.0)
    settings = dataclasses.replace(agent.imagination, gamma=0.9, lam=0.8)
    agent.imagination = dataclasses.replace(settings, replay_value_scale=1.0)
    _, observed = agent.update_world_model(batch)
    features, targets = agent.replay_value_targets(batch, observed)
    posterior = observed.posterior.features
    expected = replay_lambda_returns(
        batch["reward"], agent.critic.target_value(posterior), batch["is_first"], 0.9, 0.8
    )
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(features, posterior[:, :-1])
    # Rewards of 5 per real step: the replay targets lie far above the untrained critic, and
    # only the weighted loss pulls V(s) of the replayed states up toward them.
    continuing = ~batch["is_first"][:, 1:]
    assert (targets[continuing] > 4.0).all()
    torch.testing.assert_close(targets[1, 2], agent.critic.target_value(posterior[1, 2]))
    without = copy.deepcopy(agent)
    without.imagination = settings
    for learner in (agent, without):
        learner.optimisers["critic"].param_groups[0]["lr"] = 1e-2
    with torch.no_grad():
        before = float(agent.critic(features).mean())
    for _ in range(20):
        torch.manual_seed(7)
        metrics = agent.update(batch)
        torch.manual_seed(7)
        plain = without.update(batch)
    assert "critic_replay_loss" in metrics and "critic_replay_loss" not in plain
    with torch.no_grad():
        raised, kept = float(agent.critic(features).mean()), float(without.critic(features).mean())
    assert raised > before + 2.0 and raised > kept + 2.0, (before, raised, kept)
    with pytest.raises(ValueError, match="replay_value_scale"):
        parts = (agent.world_model, agent.actor, agent.critic, agent.uncertainty, agent.prior)
        LatentAgent(
            *parts, dataclasses.replace(settings, replay_value_scale=-0.3), OptimiserSettings()
        )


# ------------------------------------------------------------------------------ pixels


def test_pixel_world_model_learns_and_its_imagination_is_saved(tmp_path, data_cache):
    """encoder=conv alone switches MetaWorld to 64×64 pixels; the world model's loss falls
    over a few dozen updates, and the run leaves a real-beside-imagined GIF."""
    cfg = _config(
        data_cache,
        "encoder=conv",
        "encoder.depth=8",
        "phase=offline",
        "algo.offline.updates=40",
        "algo.offline.log_every=1",
        "algo.online.eval_episodes=1",
    )
    run_experiment(cfg, tmp_path)
    losses = [float(row["model_total"]) for row in read_log(tmp_path / "offline.csv")]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    gif = Image.open(tmp_path / "imagination.gif")
    assert gif.size == (128, 64) and gif.n_frames == 31  # 30 steps + the reset frame


def test_a_pixel_run_stopped_by_sigterm_still_saves_its_imagination(
    tmp_path, data_cache, monkeypatch
):
    """A run that a deadline stops (SIGTERM: the phase runner raises TerminationRequested)
    writes imagination.gif before it exits, as a finished run does."""

    def stopped(*args, **kwargs):
        raise TerminationRequested("stopped by SIGTERM")

    monkeypatch.setattr(PhaseRunner, "run", stopped)
    cfg = _config(data_cache, "encoder=conv", "encoder.depth=8", "phase=offline")
    with pytest.raises(TerminationRequested):
        run_experiment(cfg, tmp_path)
    assert Image.open(tmp_path / "imagination.gif").n_frames == 31


# ----------------------------------------------------------------------------- learning

POINT = [
    "env=point",
    "algo.sequence_length=20",
    "algo.batch_size=16",
    "algo.horizon=15",
    "world_model.free_nats=0.1",
    "algo.actor.hidden_dim=64",
    "algo.critic.hidden_dim=64",
    "world_model.deter_dim=64",
    "world_model.stoch_dim=8",
    "world_model.hidden_dim=64",
    "world_model.decoder_hidden_dim=64",
    "world_model.reward_hidden_dim=64",
    "dynamics.hidden_dim=64",
    "encoder.feature_dim=64",
    "encoder.hidden_dim=64",
    "algo.data.episodes=10",
    "algo.offline.log_every=50",
    "algo.online.eval_episodes=10",
    "env.max_episode_steps=30",
]


@pytest.mark.slow
@pytest.mark.parametrize("policy_input", ["latent", "observation"])
def test_moto_learns_the_point_task_from_ten_demonstrations(tmp_path, data_cache, policy_input):
    """Sparse reward, 10 noisy scripted episodes: the untrained actor almost never reaches the
    disc; after offline pre-training and 2 online episodes it nearly always does, whether the
    actor reads the latent state or the observation."""
    cfg = _config(
        data_cache,
        *POINT,
        "algo.offline.updates=600",
        "algo.online.updates_per_episode=20",
        f"algo.policy_input={policy_input}",
    )
    untrained = _moto(cfg, tmp_path / "untrained")
    before = untrained.env_factory  # evaluate the randomly initialised actor
    from framework.evaluation import evaluate

    initial = evaluate(untrained.policy(explore=False), before, 10, seed=100_000)["success_rate"]
    results = run_experiment(cfg, tmp_path / "run")
    assert initial <= 0.3
    assert results["offline_success"] >= 0.8 and results["final_success"] >= 0.8, results
