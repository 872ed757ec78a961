"""Window index sampling: map uniform draws over all valid window starts to ring-storage rows.

A replay holds E episodes in a ring of ``capacity`` rows; episode e starts at row
``first_rows[e]`` and offers ``counts[e]`` valid window starts (0 if it is shorter than the
window). ``cum_valid = cumsum(counts)`` numbers every valid start once, so a draw ``flat``
uniform in ``[0, cum_valid[-1])`` is a window start chosen uniformly over all of them.

Why numba: turning each draw into its window needs a search over the episodes and a run of
``length`` rows that may wrap around the ring. In plain numpy that is either one large array of
every valid start (a million entries for a million steps, rebuilt whenever an episode arrives
or leaves) or a chain of small vectorised calls whose per-call overhead dominates at batch 16.
The compiled loop below does it per sample with no temporaries. :func:`window_rows_numpy` is
the plain numpy reference the tests and ``benchmarks/replay.py`` compare it against.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def window_rows(
    flat: np.ndarray, cum_valid: np.ndarray, first_rows: np.ndarray, capacity: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the windows numbered ``flat`` (batch,) int64 in ``[0, cum_valid[-1])``.

    ``cum_valid`` (E,) int64 is the running total of valid starts per episode, ``first_rows``
    (E,) int64 each episode's first ring row. Returns ``rows`` (batch, length) int64 ring rows
    and ``is_first`` (batch, length) bool, True where a row is its episode's first.
    """
    batch = flat.shape[0]
    rows = np.empty((batch, length), np.int64)
    is_first = np.zeros((batch, length), np.bool_)
    for b in range(batch):
        # First episode whose running total exceeds the draw (episodes with no valid start
        # add nothing to the total, so they are never chosen).
        low, high = 0, cum_valid.shape[0]
        while low < high:
            middle = (low + high) // 2
            if cum_valid[middle] <= flat[b]:
                low = middle + 1
            else:
                high = middle
        offset = flat[b] - (cum_valid[low - 1] if low > 0 else 0)
        is_first[b, 0] = offset == 0
        row = (first_rows[low] + offset) % capacity
        for j in range(length):
            rows[b, j] = row
            row += 1
            if row == capacity:
                row = 0
    return rows, is_first


def valid_starts_numpy(cum_valid: np.ndarray, first_rows: np.ndarray, capacity: int) -> np.ndarray:
    """Every valid window start as a ring row, (cum_valid[-1],) int64, numbered as by
    :func:`window_rows`."""
    counts = np.diff(cum_valid, prepend=0)
    # Start j of episode e is first_rows[e] + (j - cum_before[e]).
    shift = np.repeat(first_rows - (cum_valid - counts), counts)
    return (np.arange(shift.shape[0], dtype=np.int64) + shift) % capacity


def window_rows_numpy(
    flat: np.ndarray, cum_valid: np.ndarray, first_rows: np.ndarray, capacity: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy reference for :func:`window_rows` (same arguments and results): enumerate
    every valid start, then index it."""
    starts = valid_starts_numpy(cum_valid, first_rows, capacity)[flat]
    rows = (starts[:, None] + np.arange(length)) % capacity
    is_first = np.zeros(rows.shape, bool)
    is_first[:, 0] = np.isin(starts, first_rows)
    return rows, is_first
