"""Properties of the dataset format and the sequence replay on random episode layouts.

Every episode here names each of its rows: ``obs.state[t] = (id, t, noise...)``, so a sampled
window can be traced back to the episode and steps it came from, and its whole content
compared with what was stored. What is checked is what the docstrings promise:

- ``SequenceReplay``: windows of ``sequence_length`` rows inside one episode (no padding, no
  crossing), uniformly over all valid starts; row t holds ``obs[t]`` and ``action[t-1]``,
  ``reward[t-1]``, ... (zeros / False on the reset row, ``is_first`` True there only); episodes
  with fewer rows than the window are kept but never sampled; FIFO eviction past
  ``capacity_steps`` rows.
- ``MixedReplay``: the first ``round(batch * online_fraction)`` windows from online episodes
  (all offline while online has no window), the rest offline.
- ``DatasetWriter`` -> ``load_dataset``: the episodes written, in order, bit for bit, with
  their dtypes, across appending writers.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.data import DatasetWriter, load_dataset
from framework.data.format import spec_of
from framework.errors import UserInputError
from framework.replay import MixedReplay, SequenceReplay
from framework.replay.sampling import window_rows

Episodes = Mapping[int, Mapping[str, np.ndarray]]
STEP_KEYS = ("action", "reward", "terminated", "truncated", "success")

# Modest example counts: the whole file runs in well under half a minute on one core.
FEW = settings(max_examples=40, deadline=None)


def make_episode(
    episode_id: int,
    steps: int,
    rng: np.random.Generator,
    state_dim: int = 3,
    action_dim: int = 2,
    image: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """A random episode of ``steps`` steps whose observation rows name themselves:
    ``obs.state[t, :2] = (episode_id, t)``; everything else is random (flags too)."""
    state = rng.normal(size=(steps + 1, max(state_dim, 2))).astype(np.float32)
    state[:, 0], state[:, 1] = episode_id, np.arange(steps + 1)
    episode = {
        "action": rng.uniform(-1, 1, (steps, action_dim)).astype(np.float32),
        "reward": rng.normal(size=steps).astype(np.float32),
        "terminated": rng.uniform(size=steps) < 0.3,
        "truncated": rng.uniform(size=steps) < 0.3,
        "success": rng.uniform(size=steps) < 0.5,
        "obs.state": state,
    }
    if image is not None:
        episode["obs.pixels"] = rng.integers(0, 256, (steps + 1, 3, *image), dtype=np.uint8)
    return episode


def rows_of(episode: Mapping[str, np.ndarray]) -> int:
    """Storage rows of an episode: T+1."""
    return len(episode["action"]) + 1


def replay_rows(episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The episode as the replay lays it out (sequence module docstring): one row per
    observation; step keys shifted down one row behind a zero / False reset row."""
    table = {}
    for key, array in episode.items():
        if key in STEP_KEYS:
            array = np.concatenate([np.zeros((1, *array.shape[1:]), array.dtype), array])
        table[key] = array
    table["is_first"] = np.arange(rows_of(episode)) == 0
    return table


def trace_windows(
    batch: Mapping[str, np.ndarray], episodes: Episodes, sequence_length: int
) -> list[tuple[int, int]]:
    """(episode id, first row) of every window of ``batch``, after checking that each window
    lies inside one episode, starts where a whole window fits (no padding), and equals that
    episode's rows key by key, bit for bit."""
    batch_size = len(batch["is_first"])
    assert set(batch) == {*next(iter(episodes.values())), "is_first"}
    for key, array in batch.items():
        assert array.shape[:2] == (batch_size, sequence_length), key
    ids, steps = batch["obs.state"][..., 0], batch["obs.state"][..., 1]
    assert (ids == ids[:, :1]).all(), "a window crosses an episode boundary"
    assert (np.diff(steps, axis=1) == 1).all(), "a window skips or repeats rows"
    ids, starts = ids[:, 0].astype(np.int64), steps[:, 0].astype(np.int64)
    assert set(ids.tolist()) <= set(episodes), "a window from an episode not stored now"
    # All episodes' replay rows one after another; window b is rows first[id] + start + j.
    order = list(episodes)
    tables = [replay_rows(episodes[i]) for i in order]
    sizes = np.array([rows_of(episodes[i]) for i in order])
    firsts = dict(zip(order, np.cumsum(sizes) - sizes, strict=True))
    length = dict(zip(order, sizes, strict=True))
    ends = starts + sequence_length
    assert (starts >= 0).all() and (ends <= [length[i] for i in ids.tolist()]).all(), (
        "a window runs past its episode's last row (windows are never padded)"
    )
    rows = np.array([firsts[i] for i in ids.tolist()], np.int64)[:, None] + starts[:, None]
    rows = rows + np.arange(sequence_length)
    for key in tables[0]:
        want = np.concatenate([table[key] for table in tables])[rows]
        assert batch[key].dtype == want.dtype, key
        assert batch[key].tobytes() == want.tobytes(), f"{key} differs from the stored episode"
    return list(zip(ids.tolist(), starts.tolist(), strict=True))


def valid_starts(episodes: Episodes, sequence_length: int) -> set[tuple[int, int]]:
    """Every (episode id, first row) where a whole window fits."""
    return {
        (episode_id, start)
        for episode_id, episode in episodes.items()
        for start in range(rows_of(episode) - sequence_length + 1)
    }


def covered_rows(starts: set[tuple[int, int]], sequence_length: int) -> set[tuple[int, int]]:
    return {(i, start + j) for i, start in starts for j in range(sequence_length)}


def sampleable_rows(episodes: Episodes, sequence_length: int) -> set[tuple[int, int]]:
    """Every row of every episode with at least ``sequence_length`` rows."""
    return {
        (episode_id, row)
        for episode_id, episode in episodes.items()
        if rows_of(episode) >= sequence_length
        for row in range(rows_of(episode))
    }


def fifo_kept(lengths: Sequence[int], ids: Sequence[int], capacity: int) -> list[int]:
    """Ids FIFO eviction keeps: the longest run of newest episodes whose rows fit."""
    kept, rows = [], 0
    for episode_id, steps in zip(reversed(ids), reversed(lengths), strict=True):
        rows += steps + 1
        if rows > capacity:
            break
        kept.append(episode_id)
    return kept[::-1]


def every_numbered_window(replay: SequenceReplay) -> set[tuple[int, int]]:
    """(episode id, first row) of every window the sampler numbers (0 .. num_windows-1),
    read from the ring storage: the sampler's valid starts, without sampling."""
    cum_valid, first_rows = replay._window_index()
    flat = np.arange(replay.num_windows, dtype=np.int64)
    rows, _ = window_rows(
        flat, cum_valid, first_rows, replay.capacity_steps, replay.sequence_length
    )
    state = replay._storage["obs.state"][rows[:, 0]] if len(rows) else np.zeros((0, 2))
    numbered = [(int(i), int(t)) for i, t in state[:, :2]]
    assert len(set(numbered)) == len(numbered), "a window start is numbered twice"
    return set(numbered)


def draws_for(windows: int) -> int:
    """Uniform draws after which each of ``windows`` starts was seen with probability
    1 - windows * exp(-40) (so never missed in practice)."""
    return 40 * windows + 50


# ------------------------------------------------------------------ SequenceReplay


layouts = st.fixed_dictionaries(
    {
        # Steps per episode: 0 (a reset row only), 1, and lengths either side of the window.
        "lengths": st.lists(st.integers(0, 24), min_size=1, max_size=10),
        "sequence_length": st.integers(1, 10),
        # Spare rows beyond the longest episode; small values force eviction and wrapping.
        "spare": st.integers(0, 60),
        "pixels": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


@FEW
@given(layout=layouts)
def test_replay_windows_stay_in_one_episode_and_reach_every_stored_row(layout):
    lengths, sequence_length = layout["lengths"], layout["sequence_length"]
    rng = np.random.default_rng(layout["seed"])
    capacity = max(max(lengths) + 1, sequence_length) + layout["spare"]
    replay = SequenceReplay(capacity, sequence_length, seed=layout["seed"])
    image = (2, 3) if layout["pixels"] else None
    stored: dict[int, dict[str, np.ndarray]] = {}
    for episode_id, steps in enumerate(lengths):
        stored[episode_id] = make_episode(episode_id, steps, rng, image=image)
        replay.add_episode(stored[episode_id])
        # Sampling between additions: the index follows every addition and eviction.
        kept = fifo_kept(lengths[: episode_id + 1], range(episode_id + 1), capacity)
        now = {i: stored[i] for i in kept}
        assert replay.num_episodes == len(kept)
        assert replay.num_steps == sum(lengths[i] for i in kept)
        assert replay.num_windows == len(valid_starts(now, sequence_length))
        if replay.num_windows:
            trace_windows(replay.sample(3), now, sequence_length)
        else:
            with pytest.raises(UserInputError, match="sequence_length"):
                replay.sample(1)

    expected = valid_starts(now, sequence_length)
    assert every_numbered_window(replay) == expected
    if not expected:
        return
    seen = set(trace_windows(replay.sample(draws_for(len(expected))), now, sequence_length))
    assert seen == expected
    # Every stored row of an episode long enough to sample lies in some window; rows of
    # shorter episodes (kept but never sampled) and of evicted ones in none.
    assert covered_rows(seen, sequence_length) == sampleable_rows(now, sequence_length)


@FEW
@given(
    lengths=st.lists(st.integers(0, 16), min_size=1, max_size=8),
    sequence_length=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_from_episodes_holds_exactly_the_given_episodes(lengths, sequence_length, seed):
    rng = np.random.default_rng(seed)
    episodes = {i: make_episode(i, steps, rng) for i, steps in enumerate(lengths)}
    if sum(lengths) + len(lengths) < sequence_length:  # capacity would be below the window
        with pytest.raises(UserInputError, match="sequence_length"):
            SequenceReplay.from_episodes(episodes.values(), sequence_length, seed)
        return
    replay = SequenceReplay.from_episodes(iter(episodes.values()), sequence_length, seed)
    assert replay.capacity_steps == sum(lengths) + len(lengths)  # exactly their rows
    assert replay.num_episodes == len(lengths) and replay.num_steps == sum(lengths)
    expected = valid_starts(episodes, sequence_length)
    assert every_numbered_window(replay) == expected
    if expected:
        seen = set(
            trace_windows(replay.sample(draws_for(len(expected))), episodes, sequence_length)
        )
        assert seen == expected


def test_windows_are_uniform_over_valid_starts():
    """One fixed seed (so not flaky): each valid start is drawn about equally often, so a long
    episode is picked in proportion to its starts, not once per episode."""
    rng = np.random.default_rng(0)
    lengths, sequence_length = [3, 40, 7, 0, 12], 4
    episodes = {i: make_episode(i, steps, rng) for i, steps in enumerate(lengths)}
    replay = SequenceReplay.from_episodes(episodes.values(), sequence_length, seed=5)
    expected = valid_starts(episodes, sequence_length)
    draws = 400 * len(expected)
    starts = trace_windows(replay.sample(draws), episodes, sequence_length)
    tally = Counter(starts)
    assert set(tally) == expected
    counts = np.array(list(tally.values()))
    mean = draws / len(expected)
    assert np.abs(counts - mean).max() < 5 * math.sqrt(mean)  # five standard deviations


# ------------------------------------------------------------------ MixedReplay

ONLINE = 1000  # online episode ids start here


@FEW
@given(
    offline_lengths=st.lists(st.integers(0, 16), min_size=1, max_size=6),
    online_lengths=st.lists(st.integers(0, 16), max_size=6),
    sequence_length=st.integers(1, 6),
    online_spare=st.integers(0, 30),
    fraction=st.floats(0.0, 1.0),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_mixed_batches_take_the_online_share_first_and_both_parts_reach_every_row(
    offline_lengths, online_lengths, sequence_length, online_spare, fraction, batch_size, seed
):
    rng = np.random.default_rng(seed)
    offline_episodes = {i: make_episode(i, steps, rng) for i, steps in enumerate(offline_lengths)}
    online_ids = [ONLINE + i for i in range(len(online_lengths))]
    online_episodes = {
        i: make_episode(i, steps, rng) for i, steps in zip(online_ids, online_lengths, strict=True)
    }
    capacity = max([*online_lengths, 0]) + 1 + sequence_length + online_spare
    offline_rows = sum(offline_lengths) + len(offline_lengths)
    offline = SequenceReplay.from_episodes(
        offline_episodes.values(), sequence_length, seed, max(offline_rows, sequence_length)
    )
    online = SequenceReplay(capacity, sequence_length, seed + 1)
    for episode in online_episodes.values():
        online.add_episode(episode)
    kept = {i: online_episodes[i] for i in fifo_kept(online_lengths, online_ids, capacity)}
    mixed = MixedReplay(offline, online, fraction)

    online_count = round(batch_size * fraction) if online.num_windows else 0
    offline_starts, online_starts = (
        valid_starts(offline_episodes, sequence_length),
        valid_starts(kept, sequence_length),
    )
    if online_count < batch_size and not offline_starts:
        with pytest.raises(UserInputError, match="sequence_length"):
            mixed.sample(batch_size)
        return
    seen_offline: set[tuple[int, int]] = set()
    seen_online: set[tuple[int, int]] = set()
    batches = 0
    while batches < 200 and not (
        seen_offline == offline_starts and (seen_online == online_starts or online_count == 0)
    ):
        batch = mixed.sample(batch_size)
        batches += 1
        starts = trace_windows(batch, {**offline_episodes, **kept}, sequence_length)
        assert all(i >= ONLINE for i, _ in starts[:online_count]), "online share not first"
        assert all(i < ONLINE for i, _ in starts[online_count:]), "online window past its share"
        seen_online |= set(starts[:online_count])
        seen_offline |= set(starts[online_count:])
    if online_count:
        assert seen_online <= online_starts
        if batches * online_count >= draws_for(len(online_starts)):
            assert seen_online == online_starts
    if online_count < batch_size:
        assert seen_offline <= offline_starts
        if batches * (batch_size - online_count) >= draws_for(len(offline_starts)):
            assert seen_offline == offline_starts


# ------------------------------------------------------------------ dataset round trip

#: Bit patterns a round trip must keep: signed zero, subnormals, extremes, infinities, NaN.
SPECIALS = np.array(
    [-0.0, 1e-45, -1e-40, 3.4028235e38, -3.4028235e38, np.inf, -np.inf, np.nan], np.float32
)

datasets = st.fixed_dictionaries(
    {
        # Steps per episode (a dataset episode has at least one); 0 to 6 episodes.
        "lengths": st.lists(st.integers(1, 12), max_size=6),
        "observations": st.sampled_from(["state", "pixels", "both"]),
        "action_dim": st.integers(1, 4),
        "state_dim": st.integers(2, 5),
        "image": st.tuples(st.integers(1, 4), st.integers(1, 4)),
        # Where a new writer takes over (appending): cut points into the episode list.
        "cuts": st.lists(st.integers(0, 6), max_size=3),
        "specials": st.booleans(),
        "fortran": st.booleans(),
        "metadata": st.dictionaries(
            st.text(max_size=5),
            st.one_of(
                st.integers(-(2**40), 2**40),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=5),
                st.booleans(),
                st.none(),
            ),
            max_size=3,
        ),
        "seed": st.integers(0, 2**16),
    }
)


def dataset_episodes(layout: Mapping) -> list[dict[str, np.ndarray]]:
    """Random episodes for a dataset layout drawn from ``datasets``."""
    rng = np.random.default_rng(layout["seed"])
    image = layout["image"] if layout["observations"] != "state" else None
    episodes = []
    for episode_id, steps in enumerate(layout["lengths"]):
        episode = make_episode(
            episode_id, steps, rng, layout["state_dim"], layout["action_dim"], image
        )
        if layout["observations"] == "pixels":
            del episode["obs.state"]
        if layout["specials"]:
            for key in ("action", "reward", "obs.state"):
                if key in episode:
                    flat = episode[key].reshape(-1)
                    at = rng.integers(0, flat.size, size=min(flat.size, 4))
                    flat[at] = rng.choice(SPECIALS, size=len(at))
        if layout["fortran"]:  # memory layout must not matter
            episode = {key: np.asfortranarray(array) for key, array in episode.items()}
        episodes.append(episode)
    return episodes


def write_in_sessions(root: Path, episodes: list, cuts: list[int], metadata: Mapping) -> None:
    """Write ``episodes`` in order, a new (appending) writer at each cut."""
    bounds = sorted({0, len(episodes), *[min(cut, len(episodes)) for cut in cuts]})
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        writer = DatasetWriter(root, metadata)
        assert len(writer) == start
        for episode in episodes[start:stop]:
            writer.write(episode)
    if not episodes:
        DatasetWriter(root, metadata)


@FEW
@given(layout=datasets)
def test_written_episodes_load_back_bit_for_bit_in_order(layout):
    episodes = dataset_episodes(layout)
    obs_spec = {
        key: episodes[0][key].shape[1:]
        for key in ("obs.state", "obs.pixels")
        if episodes and key in episodes[0]
    }
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        write_in_sessions(root, episodes, layout["cuts"], layout["metadata"])
        dataset = load_dataset(
            root,
            action_dim=layout["action_dim"] if episodes else None,
            obs_spec=obs_spec or None,
        )
        manifest = json.loads((root / "manifest.json").read_text())
    assert len(dataset) == len(episodes)
    for index, (got, want) in enumerate(zip(dataset.episodes, episodes, strict=True)):
        assert list(got) == list(want), f"episode {index} keys"
        for key in want:
            assert got[key].dtype == want[key].dtype, (index, key)
            assert got[key].shape == want[key].shape, (index, key)
            assert got[key].tobytes() == want[key].tobytes(), (index, key)
    assert [entry["length"] for entry in manifest["episodes"]] == layout["lengths"]
    files = [f"episodes/episode_{i:06d}.npz" for i in range(len(episodes))]
    assert [entry["file"] for entry in manifest["episodes"]] == files
    assert dataset.spec == (spec_of(episodes[0]) if episodes else {})
    assert dataset.metadata == json.loads(json.dumps(layout["metadata"]))


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    sequence_length=st.integers(1, 8),
    pixels=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_loaded_dataset_replays_exactly_the_written_episodes(
    lengths, sequence_length, pixels, seed
):
    """Disk to windows, as an offline phase does (``SequenceReplay.from_episodes`` over the
    loaded episodes): every window traces back to the episode written, content included."""
    rng = np.random.default_rng(seed)
    written = {
        i: make_episode(i, n, rng, image=(2, 2) if pixels else None) for i, n in enumerate(lengths)
    }
    with tempfile.TemporaryDirectory() as folder:
        write_in_sessions(Path(folder), list(written.values()), [], {"seed": seed})
        loaded = load_dataset(folder).episodes
    if sum(lengths) + len(lengths) < sequence_length:
        return  # no replay of that window length holds them (tested above)
    replay = SequenceReplay.from_episodes(loaded, sequence_length, seed)
    expected = valid_starts(written, sequence_length)
    assert replay.num_windows == len(expected)
    if expected:
        seen = set(trace_windows(replay.sample(draws_for(len(expected))), written, sequence_length))
        assert seen == expected
