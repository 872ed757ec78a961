"""Sequence replay for world models: whole episodes in preallocated ring storage, sampled as
fixed-length windows inside one episode, or, with ``cross_episodes``, anywhere in the stored
stream of episodes (a window may run from one episode into the next; ``is_first`` marks where).

Layout, one *row* per observation: an episode of T steps takes T+1 consecutive rows of a ring
shared by every key. Row t holds observation t (``obs.*[t]``) and the step that led to it:
``action[t-1]``, ``reward[t-1]``, ``terminated[t-1]``, ``truncated[t-1]``, ``success[t-1]``.
Row 0, the reset observation, has zeros / False there and ``is_first`` True. This is DreamerV3's
layout: a recurrent model reads row t as "took action[t-1], arrived at obs[t], got reward[t-1]".
A one-step model wants (obs, action, reward, next obs) = ``obs[:, :-1], action[:, 1:],
reward[:, 1:], obs[:, 1:]`` of a window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from framework.errors import UserInputError
from framework.replay.sampling import window_rows

Episode = Mapping[str, np.ndarray]
OBS_PREFIX = "obs."  # keys with T+1 rows; every other key has T rows (one per step)


class EpisodeSink(Protocol):
    """Where finished episodes go as they are added, e.g. a dataset writer on disk."""

    def write(self, episode: Episode) -> Path:
        """Store ``episode`` durably and return where it went."""
        ...


def _steps(episode: Episode) -> int:
    """T, the number of steps of ``episode`` (rows of its ``action``)."""
    if "action" not in episode:
        raise UserInputError(
            f"episode has no 'action' key (keys: {sorted(episode)}). An episode holds action "
            "(T, A), reward (T,), terminated/truncated/success (T,) and obs.* with T+1 rows."
        )
    shape = np.shape(episode["action"])
    if not shape:
        raise UserInputError("episode key 'action' is a scalar; expected T rows of shape (A,).")
    return shape[0]


def _check_episode(episode: Episode, storage: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``episode`` after checking them against the conventions and against
    ``storage`` (the layout fixed by the first episode; empty before it)."""
    steps = _steps(episode)
    if not any(key.startswith(OBS_PREFIX) for key in episode):
        raise UserInputError(
            f"episode has no observation key (keys: {sorted(episode)}); add obs.state and/or "
            "obs.pixels with T+1 rows."
        )
    if storage and set(episode) != set(storage):
        missing, extra = sorted(set(storage) - set(episode)), sorted(set(episode) - set(storage))
        raise UserInputError(
            f"episode keys differ from the replay's first episode: missing {missing}, "
            f"unexpected {extra}. Every episode in a replay must carry the same keys."
        )
    arrays = {}
    for key, value in episode.items():
        array = np.asarray(value)
        rows = steps + 1 if key.startswith(OBS_PREFIX) else steps
        what = "T+1 (one per observation)" if key.startswith(OBS_PREFIX) else "T (one per step)"
        if array.ndim == 0 or len(array) != rows:
            got = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
            raise UserInputError(
                f"episode key {key!r} has {got}; expected {what} = {rows} for T={steps} actions."
            )
        if array.ndim == 4 and array.dtype != np.uint8:
            raise UserInputError(
                f"episode key {key!r} looks like images {array.shape[1:]} but is {array.dtype}; "
                "keep images as uint8 (3, H, W)."
            )
        if np.issubdtype(array.dtype, np.floating):
            bad = ~np.isfinite(array).all(axis=tuple(range(1, array.ndim)))
            if bad.any():
                raise UserInputError(
                    f"episode key {key!r} holds NaN or infinite values (first at row "
                    f"{int(np.argmax(bad))}); fix the data before adding it to the replay."
                )
        if storage:
            stored = storage[key]
            if array.dtype != stored.dtype or array.shape[1:] != stored.shape[1:]:
                raise UserInputError(
                    f"episode key {key!r} is {array.dtype} rows of shape {array.shape[1:]}, but "
                    f"the replay's first episode had {stored.dtype} rows of shape "
                    f"{stored.shape[1:]}; every episode must match it."
                )
        arrays[key] = array
    return arrays


def _write_ring(storage: np.ndarray, start: int, values: np.ndarray) -> None:
    """Copy ``values`` into ``storage`` from row ``start`` on, wrapping past the last row."""
    head = min(len(values), len(storage) - start)
    storage[start : start + head] = values[:head]
    storage[: len(values) - head] = values[head:]


class SequenceReplay:
    """Whole episodes in one preallocated ring array per key (images stay uint8), sampled as
    windows of ``sequence_length`` rows, uniformly over all valid starts.

    Windows inside one episode (the default) cover an episode's first and last
    ``sequence_length - 1`` rows less often than its middle: row 0 lies in one window, a
    middle row in ``sequence_length``. With ``cross_episodes`` a window is any run of
    ``sequence_length`` consecutive stored rows, as in DreamerV3's replay, so every row but the
    stream's first and last ``sequence_length - 1`` is covered equally often; a recurrent model
    reading the window resets where ``is_first`` is set. One-step models that pair row t with
    row t+1 must then drop pairs whose second row is an episode's first.

    ``capacity_steps`` counts storage rows: an episode of T steps takes T+1 (module docstring).
    When a new episode does not fit, the oldest ones are evicted (FIFO). Episodes with fewer
    than ``sequence_length`` rows are kept, but sampled only with ``cross_episodes``.
    ``episode_sink``, if given, receives each episode as it is added, before it is stored, so
    a killed run loses no finished episode.
    """

    def __init__(
        self,
        capacity_steps: int,
        sequence_length: int,
        seed: int,
        episode_sink: EpisodeSink | None = None,
        cross_episodes: bool = False,
    ) -> None:
        if sequence_length < 1 or capacity_steps < sequence_length:
            raise UserInputError(
                f"replay needs 1 <= sequence_length <= capacity_steps; got sequence_length="
                f"{sequence_length}, capacity_steps={capacity_steps}."
            )
        self.capacity_steps, self.sequence_length = capacity_steps, sequence_length
        self.episode_sink, self.cross_episodes = episode_sink, cross_episodes
        self._rng = np.random.default_rng(seed)
        self._storage: dict[str, np.ndarray] = {}  # allocated from the first episode's layout
        self._is_first = np.zeros(capacity_steps, bool)  # per ring row, for cross_episodes
        self._episodes: deque[tuple[int, int]] = deque()  # (first row, rows), oldest first
        self._next_row = 0
        self._stored_rows = 0
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # (cum_valid, first_rows)

    @classmethod
    def from_episodes(
        cls,
        episodes: Iterable[Episode],
        sequence_length: int,
        seed: int,
        capacity_steps: int | None = None,
        episode_sink: EpisodeSink | None = None,
        cross_episodes: bool = False,
    ) -> SequenceReplay:
        """A replay holding ``episodes`` (e.g. loaded from disk), in order. ``capacity_steps``
        defaults to exactly their rows; ``episode_sink`` receives only episodes added later."""
        if capacity_steps is None:
            episodes = list(episodes)
            capacity_steps = sum(_steps(episode) + 1 for episode in episodes)
        replay = cls(capacity_steps, sequence_length, seed, cross_episodes=cross_episodes)
        for episode in episodes:
            replay.add_episode(episode)
        replay.episode_sink = episode_sink
        return replay

    @property
    def rng_state(self) -> dict[str, Any]:
        """The window sampler's generator state (for checkpoints; assign it to restore)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    @property
    def num_episodes(self) -> int:
        """Episodes stored, including those too short to sample."""
        return len(self._episodes)

    @property
    def num_steps(self) -> int:
        """Steps (transitions) stored: rows minus one reset row per episode."""
        return self._stored_rows - len(self._episodes)

    @property
    def num_windows(self) -> int:
        """Valid window starts; 0 while too few rows are stored to sample."""
        if self.cross_episodes:
            return max(self._stored_rows - self.sequence_length + 1, 0)
        cum_valid, _ = self._window_index()
        return int(cum_valid[-1]) if len(cum_valid) else 0

    def add_episode(self, episode: Episode) -> None:
        """Validate ``episode`` (layout in the module docstring), hand it to the sink, and copy
        it into the ring, evicting the oldest episodes as needed."""
        arrays = _check_episode(episode, self._storage)
        rows = _steps(arrays) + 1
        if rows > self.capacity_steps:
            raise UserInputError(
                f"episode has {rows} rows (T+1 observations) but the replay holds only "
                f"capacity_steps={self.capacity_steps}; raise capacity_steps."
            )
        if self.episode_sink is not None:
            self.episode_sink.write(episode)
        if not self._storage:
            self._storage = {
                key: np.zeros((self.capacity_steps, *array.shape[1:]), array.dtype)
                for key, array in arrays.items()
            }
        while self._stored_rows + rows > self.capacity_steps:
            self._stored_rows -= self._episodes.popleft()[1]
        first = self._next_row
        for key, array in arrays.items():
            if key.startswith(OBS_PREFIX):
                _write_ring(self._storage[key], first, array)
            else:  # row 0 has no step leading to it
                self._storage[key][first] = 0
                _write_ring(self._storage[key], (first + 1) % self.capacity_steps, array)
        self._is_first[(first + np.arange(rows)) % self.capacity_steps] = False
        self._is_first[first] = True
        self._episodes.append((first, rows))
        self._next_row = (first + rows) % self.capacity_steps
        self._stored_rows += rows
        self._index = None

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` windows: every stored key as (batch, sequence_length, ...) in its
        stored dtype, plus ``is_first`` (batch, sequence_length) bool."""
        batch = self._empty_batch(batch_size)
        self._sample_into(batch, 0, batch_size)
        return batch

    def _window_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(cum_valid, first_rows) over the stored episodes, as :func:`window_rows` takes them."""
        if self._index is None:
            firsts, rows = np.array(self._episodes, np.int64).reshape(-1, 2).T
            counts = np.maximum(rows - self.sequence_length + 1, 0)
            self._index = (np.cumsum(counts), np.ascontiguousarray(firsts))
        return self._index

    def _empty_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        shape = (batch_size, self.sequence_length)
        batch = {key: np.empty(shape + s.shape[1:], s.dtype) for key, s in self._storage.items()}
        batch["is_first"] = np.empty(shape, bool)
        return batch

    def _sample_into(self, batch: dict[str, np.ndarray], start: int, stop: int) -> None:
        """Fill rows ``start:stop`` of ``batch`` (from :meth:`_empty_batch`) with windows."""
        if self.num_windows == 0:
            longest = max((rows for _, rows in self._episodes), default=0)
            where = "stored" if self.cross_episodes else "in any one stored episode"
            raise UserInputError(
                f"fewer than sequence_length={self.sequence_length} rows {where} to sample "
                f"({self.num_episodes} episodes, longest {longest} rows = T+1); add longer "
                "episodes or lower sequence_length."
            )
        if self.cross_episodes:
            # The stored episodes are one contiguous run of ring rows from the oldest's first.
            offsets = self._rng.integers(0, self.num_windows, size=stop - start)
            starts = self._episodes[0][0] + offsets
            rows = (starts[:, None] + np.arange(self.sequence_length)) % self.capacity_steps
            is_first = self._is_first[rows]
        else:
            cum_valid, first_rows = self._window_index()
            flat = self._rng.integers(0, cum_valid[-1], size=stop - start)
            rows, is_first = window_rows(
                flat, cum_valid, first_rows, self.capacity_steps, self.sequence_length
            )
        for key, storage in self._storage.items():
            # mode="clip" (rows are always in range) lets take write straight into ``out``.
            np.take(storage, rows, axis=0, out=batch[key][start:stop], mode="clip")
        batch["is_first"][start:stop] = is_first


class MixedReplay:
    """Batches mixing an offline dataset with online experience: the first
    ``round(batch_size * online_fraction)`` windows (Python's round) come from ``online`` and
    the rest from ``offline``; all come from ``offline`` while ``online`` has nothing to
    sample."""

    def __init__(
        self, offline: SequenceReplay, online: SequenceReplay, online_fraction: float
    ) -> None:
        if not 0.0 <= online_fraction <= 1.0:  # also False for NaN
            raise UserInputError(f"online_fraction must lie in [0, 1]; got {online_fraction}.")
        if offline.sequence_length != online.sequence_length:
            raise UserInputError(
                f"offline and online replays sample windows of different lengths "
                f"({offline.sequence_length} vs {online.sequence_length}); make them equal."
            )
        self.offline, self.online, self.online_fraction = offline, online, online_fraction

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` windows laid out as :meth:`SequenceReplay.sample` returns them."""
        online = round(batch_size * self.online_fraction) if self.online.num_windows else 0
        if online == batch_size:
            return self.online.sample(batch_size)
        batch = self.offline._empty_batch(batch_size)
        self.offline._sample_into(batch, online, batch_size)
        if online:
            self._check_same_layout()
            self.online._sample_into(batch, 0, online)
        return batch

    def _check_same_layout(self) -> None:
        offline, online = _layout(self.offline), _layout(self.online)
        for key in sorted(offline.keys() | online.keys()):
            if offline.get(key) != online.get(key):
                raise UserInputError(
                    f"offline and online episodes differ in key {key!r} (offline "
                    f"{offline.get(key, 'missing')}, online {online.get(key, 'missing')}); both "
                    "replays must share one episode layout."
                )


def _layout(replay: SequenceReplay) -> dict[str, str]:
    """Each stored key's dtype and row shape, as text."""
    return {key: f"{array.dtype} {array.shape[1:]}" for key, array in replay._storage.items()}
