"""Sequence replay: windows stay inside one episode (or run across episodes, covering every
row alike), every stored step is reachable, FIFO eviction, uint8 images, exact mixing ratios,
numba and numpy samplers agree, bad input."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.errors import UserInputError
from framework.replay import MixedReplay, SequenceReplay
from framework.replay.sampling import valid_starts_numpy, window_rows, window_rows_numpy


def make_episode(episode_id: int, steps: int, pixels: bool = False) -> dict[str, np.ndarray]:
    """An episode whose rows name themselves: obs.state[t] = (id, t), action[t] = (id, t)."""
    t = np.arange(steps + 1, dtype=np.float32)
    episode = {
        "action": np.stack([np.full(steps, episode_id), t[:-1]], axis=1).astype(np.float32),
        "reward": t[:-1] + 0.5,
        "terminated": np.arange(steps) == steps - 1,
        "truncated": np.zeros(steps, bool),
        "success": np.zeros(steps, bool),
        "obs.state": np.stack([np.full(steps + 1, episode_id), t], axis=1).astype(np.float32),
    }
    if pixels:
        frames = np.empty((steps + 1, 3, 4, 4), np.uint8)
        frames[:] = (np.arange(steps + 1) % 256).astype(np.uint8)[:, None, None, None]
        episode["obs.pixels"] = frames
    return episode


def windows(batch: dict[str, np.ndarray]) -> set[tuple[int, int]]:
    """(episode id, first step) of every window, after checking each lies in one episode
    with consecutive steps."""
    ids, steps = batch["obs.state"][..., 0], batch["obs.state"][..., 1]
    assert (ids == ids[:, :1]).all(), "a window crosses an episode boundary"
    assert (np.diff(steps, axis=1) == 1).all(), "a window skips or repeats steps"
    assert (batch["is_first"][:, 1:] == 0).all()
    assert (batch["is_first"][:, 0] == (steps[:, 0] == 0)).all()
    later = steps > 0  # row t carries action[t-1]; the reset row carries zeros
    assert (batch["action"][..., 1][later] == steps[later] - 1).all()
    assert (batch["action"][~later] == 0).all()
    return {(int(i), int(s)) for i, s in zip(ids[:, 0], steps[:, 0], strict=True)}


def test_rows_align_observation_with_the_step_that_led_to_it():
    replay = SequenceReplay(capacity_steps=100, sequence_length=4, seed=0)
    replay.add_episode(make_episode(7, steps=3, pixels=True))  # 4 rows: exactly one window
    batch = replay.sample(2)
    assert set(batch) == {*make_episode(7, 3, pixels=True), "is_first"}
    assert batch["obs.state"].shape == (2, 4, 2) and batch["action"].shape == (2, 4, 2)
    np.testing.assert_array_equal(batch["obs.state"][0, :, 1], [0, 1, 2, 3])
    np.testing.assert_array_equal(batch["action"][0], [[0, 0], [7, 0], [7, 1], [7, 2]])
    np.testing.assert_array_equal(batch["reward"][0], [0, 0.5, 1.5, 2.5])
    np.testing.assert_array_equal(batch["terminated"][0], [False, False, False, True])
    np.testing.assert_array_equal(batch["is_first"][0], [True, False, False, False])
    assert batch["obs.pixels"].dtype == np.uint8
    np.testing.assert_array_equal(batch["obs.pixels"][0, :, 0, 0, 0], [0, 1, 2, 3])


def test_every_stored_step_is_reachable_and_windows_stay_in_their_episode():
    replay = SequenceReplay(capacity_steps=200, sequence_length=5, seed=1)
    lengths = [3, 9, 4, 12, 20]  # 3 steps = 4 rows: too short to sample
    for episode_id, steps in enumerate(lengths):
        replay.add_episode(make_episode(episode_id, steps, pixels=True))
    seen = windows(replay.sample(3000))
    expected = {(i, s) for i, n in enumerate(lengths) for s in range(n + 1 - 5 + 1)}
    assert seen == expected
    assert replay.num_windows == len(expected)
    assert replay.num_steps == sum(lengths) and replay.num_episodes == len(lengths)


def test_fifo_eviction_keeps_the_newest_episodes_and_wraps_the_ring():
    replay = SequenceReplay(capacity_steps=25, sequence_length=3, seed=2)
    for episode_id in range(4):  # 10 rows each: the ring holds two
        replay.add_episode(make_episode(episode_id, steps=9, pixels=True))
    assert replay.num_episodes == 2 and replay.num_steps == 18
    batch = replay.sample(2000)
    assert windows(batch) == {(i, s) for i in (2, 3) for s in range(8)}
    # Episode 2 wraps (rows 20..24 and 0..4), episode 3 overwrites episode 0's rows 5..14;
    # pixels still follow their steps.
    np.testing.assert_array_equal(batch["obs.pixels"][:, :, 0, 0, 0], batch["obs.state"][..., 1])


def test_short_episodes_are_skipped_and_an_all_short_replay_says_so():
    replay = SequenceReplay(capacity_steps=100, sequence_length=10, seed=3)
    with pytest.raises(UserInputError, match="0 episodes"):
        replay.sample(1)
    replay.add_episode(make_episode(0, steps=5))
    with pytest.raises(UserInputError, match="sequence_length=10.*longest 6 rows"):
        replay.sample(1)
    replay.add_episode(make_episode(1, steps=9))
    assert windows(replay.sample(50)) == {(1, 0)}


def stream_starts(batch: dict[str, np.ndarray], stream: list[tuple[int, int]]) -> list[int]:
    """Where in ``stream`` (the stored rows as (episode id, step), oldest first) each window
    of ``batch`` starts, after checking it is a run of consecutive stream rows whose
    ``is_first`` and actions follow the row layout."""
    length = batch["obs.state"].shape[1]
    position = {row: index for index, row in enumerate(stream)}
    starts = []
    for window in range(len(batch["obs.state"])):
        ids, steps = batch["obs.state"][window].T
        rows = [(int(i), int(t)) for i, t in zip(ids, steps, strict=True)]
        start = position[rows[0]]
        assert rows == stream[start : start + length], "a window skips or repeats rows"
        np.testing.assert_array_equal(batch["is_first"][window], steps == 0)
        assert (batch["action"][window][steps == 0] == 0).all()
        starts.append(start)
    return starts


def test_cross_episode_windows_cover_every_row_alike_and_mark_episode_starts():
    lengths = [3, 9, 4, 12]  # the 3-step episode (4 rows) is now sampled too
    replay = SequenceReplay(capacity_steps=200, sequence_length=5, seed=4, cross_episodes=True)
    for episode_id, steps in enumerate(lengths):
        replay.add_episode(make_episode(episode_id, steps))
    stream = [(i, t) for i, n in enumerate(lengths) for t in range(n + 1)]
    starts = stream_starts(replay.sample(4000), stream)
    assert replay.num_windows == len(stream) - 5 + 1 == len(set(starts))
    # Uniform starts cover each row of the stream's middle in 5 windows out of num_windows:
    # an episode's first row as often as any other (inside episodes: 1 window in 5).
    coverage = np.zeros(len(stream))
    for start in starts:
        coverage[start : start + 5] += 1
    middle = coverage[4 : len(stream) - 4] / len(starts)
    np.testing.assert_allclose(middle, 5 / replay.num_windows, rtol=0.25)


def test_cross_episode_windows_stay_inside_the_stored_episodes_after_eviction():
    replay = SequenceReplay(capacity_steps=25, sequence_length=3, seed=5, cross_episodes=True)
    for episode_id in range(4):  # 10 rows each: the ring keeps episodes 2 (wrapping) and 3
        replay.add_episode(make_episode(episode_id, steps=9))
    stream = [(i, t) for i in (2, 3) for t in range(10)]
    assert set(stream_starts(replay.sample(2000), stream)) == set(range(len(stream) - 3 + 1))
    short = SequenceReplay(capacity_steps=100, sequence_length=10, seed=6, cross_episodes=True)
    short.add_episode(make_episode(0, steps=5))
    with pytest.raises(UserInputError, match="fewer than sequence_length=10 rows stored"):
        short.sample(1)
    short.add_episode(make_episode(1, steps=3))  # 6 + 4 rows: one window across both
    assert (
        stream_starts(short.sample(3), [(0, t) for t in range(6)] + [(1, t) for t in range(4)])
        == [0] * 3
    )


def test_episode_longer_than_capacity_and_bad_sizes_are_rejected():
    with pytest.raises(UserInputError, match="sequence_length"):
        SequenceReplay(capacity_steps=4, sequence_length=5, seed=0)
    replay = SequenceReplay(capacity_steps=8, sequence_length=2, seed=0)
    with pytest.raises(UserInputError, match="capacity_steps=8"):
        replay.add_episode(make_episode(0, steps=8))


def test_images_stay_uint8_without_float_copies():
    frames, steps, episodes = 3 * 64 * 64, 99, 20
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        replay = SequenceReplay(capacity_steps=episodes * (steps + 1), sequence_length=8, seed=0)
        for episode_id in range(episodes):
            episode = make_episode(episode_id, steps)
            episode["obs.pixels"] = np.zeros((steps + 1, 3, 64, 64), np.uint8)
            replay.add_episode(episode)
        del episode
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    raw = episodes * (steps + 1) * frames
    assert raw <= held <= 1.1 * raw
    assert replay.sample(4)["obs.pixels"].dtype == np.uint8


class RecordingSink:
    def __init__(self) -> None:
        self.episodes: list[dict[str, np.ndarray]] = []

    def write(self, episode: dict[str, np.ndarray]) -> Path:
        self.episodes.append(episode)
        return Path(f"episode_{len(self.episodes)}.npz")


def test_sink_receives_each_valid_episode_and_from_episodes_rebuilds_the_replay():
    sink = RecordingSink()
    replay = SequenceReplay(capacity_steps=30, sequence_length=3, seed=0, episode_sink=sink)
    for episode_id in range(4):  # 8 rows each: the ring keeps three
        replay.add_episode(make_episode(episode_id, steps=7))
    bad = make_episode(9, steps=7)
    bad["reward"][2] = np.nan
    with pytest.raises(UserInputError):
        replay.add_episode(bad)
    assert [int(e["obs.state"][0, 0]) for e in sink.episodes] == [0, 1, 2, 3]
    assert replay.num_episodes == 3, "an evicted episode is still on the sink's side"

    later = RecordingSink()
    rebuilt = SequenceReplay.from_episodes(
        sink.episodes, sequence_length=3, seed=0, episode_sink=later
    )
    assert rebuilt.capacity_steps == 32 and rebuilt.num_episodes == 4
    assert windows(rebuilt.sample(1000)) == {(i, s) for i in range(4) for s in range(6)}
    assert later.episodes == []
    rebuilt.add_episode(make_episode(4, steps=7))
    assert len(later.episodes) == 1


def _nan_at(key: str, row: int):
    def corrupt(episode: dict[str, np.ndarray]) -> None:
        episode[key] = episode[key].copy()
        episode[key][row] = np.nan

    return corrupt


BAD_EPISODES = {
    "missing key": ("reward", lambda e: e.pop("reward")),
    "extra key": ("cost", lambda e: e.update(cost=np.zeros(len(e["reward"]), np.float32))),
    "shape": ("obs.state", lambda e: e.update({"obs.state": np.zeros((7, 3), np.float32)})),
    "dtype": ("action", lambda e: e.update(action=e["action"].astype(np.float64))),
    "nan reward": ("reward", _nan_at("reward", 3)),
    "nan observation": ("obs.state", _nan_at("obs.state", 6)),
    "obs rows != T+1": ("obs.state", lambda e: e.update({"obs.state": e["obs.state"][:-1]})),
    "step rows != T": ("terminated", lambda e: e.update(terminated=e["terminated"][1:])),
    "float pixels": (
        "obs.pixels",
        lambda e: e.update({"obs.pixels": np.zeros((7, 3, 4, 4), np.float32)}),
    ),
    "no action": ("action", lambda e: e.pop("action")),
}


@pytest.mark.parametrize("problem", BAD_EPISODES)
def test_bad_episodes_raise_an_error_naming_the_key(problem):
    key, corrupt = BAD_EPISODES[problem]
    replay = SequenceReplay(capacity_steps=100, sequence_length=2, seed=0)
    replay.add_episode(make_episode(0, steps=6))
    episode = make_episode(1, steps=6)
    corrupt(episode)
    with pytest.raises(UserInputError, match=key):
        replay.add_episode(episode)
    assert replay.num_episodes == 1


def test_mixed_replay_takes_the_exact_online_share():
    offline = SequenceReplay.from_episodes(
        [make_episode(i, steps=10) for i in range(3)], sequence_length=4, seed=0
    )
    online = SequenceReplay(capacity_steps=100, sequence_length=4, seed=1)
    mixed = MixedReplay(offline, online, online_fraction=0.3)
    assert (mixed.sample(10)["obs.state"][:, 0, 0] < 100).all(), "online is empty: all offline"
    online.add_episode(make_episode(100, steps=10))
    for batch_size, online_count in [(10, 3), (16, 5), (1, 0), (4, 1)]:
        ids = mixed.sample(batch_size)["obs.state"][:, 0, 0]
        assert (ids[:online_count] == 100).all() and (ids[online_count:] < 100).all()
        windows(mixed.sample(batch_size))
    all_online = MixedReplay(SequenceReplay(50, 4, seed=0), online, online_fraction=1.0)
    assert (all_online.sample(5)["obs.state"][:, 0, 0] == 100).all()


def test_mixed_replay_validates_its_inputs():
    offline, online = SequenceReplay(50, 4, seed=0), SequenceReplay(50, 4, seed=1)
    for fraction in (-0.1, 1.5, float("nan")):
        with pytest.raises(UserInputError, match="online_fraction"):
            MixedReplay(offline, online, fraction)
    with pytest.raises(UserInputError, match="different lengths"):
        MixedReplay(offline, SequenceReplay(50, 5, seed=1), 0.5)
    offline.add_episode(make_episode(0, steps=10))
    online.add_episode(make_episode(1, steps=10, pixels=True))
    with pytest.raises(UserInputError, match="obs.pixels"):
        MixedReplay(offline, online, 0.5).sample(4)


def test_numba_and_numpy_samplers_agree_on_every_start():
    replay = SequenceReplay(capacity_steps=60, sequence_length=4, seed=0)
    for episode_id, steps in enumerate([12, 2, 20, 9, 15, 30]):  # evicts and wraps the ring
        replay.add_episode(make_episode(episode_id, steps))
    cum_valid, first_rows = replay._window_index()
    flat = np.arange(cum_valid[-1])
    fast = window_rows(flat, cum_valid, first_rows, 60, 4)
    reference = window_rows_numpy(flat, cum_valid, first_rows, 60, 4)
    np.testing.assert_array_equal(fast[0], reference[0])
    np.testing.assert_array_equal(fast[1], reference[1])
    assert sorted(fast[0][:, 0]) == sorted(valid_starts_numpy(cum_valid, first_rows, 60))
    assert len(set(fast[0][:, 0])) == len(flat), "each start is numbered once"


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=12),
    sequence_length=st.integers(min_value=1, max_value=8),
    spare=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_windows_stay_in_one_episode_and_reach_every_valid_start(
    lengths, sequence_length, spare, seed
):
    capacity = max(max(lengths) + 1, sequence_length) + spare
    replay = SequenceReplay(capacity, sequence_length, seed)
    for episode_id, steps in enumerate(lengths):
        replay.add_episode(make_episode(episode_id, steps))
    kept, rows = [], 0  # FIFO keeps the longest run of newest episodes that fits
    for episode_id in reversed(range(len(lengths))):
        rows += lengths[episode_id] + 1
        if rows > capacity:
            break
        kept.append(episode_id)
    expected = {(i, s) for i in kept for s in range(lengths[i] + 1 - sequence_length + 1)}
    assert replay.num_episodes == len(kept) and replay.num_windows == len(expected)
    if not expected:
        with pytest.raises(UserInputError):
            replay.sample(1)
        return
    assert windows(replay.sample(60 * len(expected))) == expected
