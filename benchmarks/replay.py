"""Sequence replay: (a) numba window-index sampling against plain numpy, (b) memory held by a
replay of 64x64 RGB episodes against the raw bytes of the frames it stores, (c) sample()
throughput for pixel windows. Prints a table and writes the figures to JSON.

    python benchmarks/replay.py
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from framework.replay import SequenceReplay
from framework.replay.sampling import valid_starts_numpy, window_rows, window_rows_numpy

FRAME = (3, 64, 64)


def episode(steps: int, rng: np.random.Generator, pixels: bool) -> dict[str, np.ndarray]:
    """A random episode in the project's layout; pixel observations, or a small state."""
    obs = (
        {"obs.pixels": rng.integers(0, 256, (steps + 1, *FRAME), dtype=np.uint8)}
        if pixels
        else {"obs.state": rng.standard_normal((steps + 1, 4), dtype=np.float32)}
    )
    return {
        "action": rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        "reward": rng.standard_normal(steps, dtype=np.float32),
        "terminated": np.zeros(steps, bool),
        "truncated": np.arange(steps) == steps - 1,
        "success": np.zeros(steps, bool),
        **obs,
    }


def window_rows_searchsorted(
    cum_before: np.ndarray,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], tuple[np.ndarray, None]]:
    """The best vectorised numpy we know (no enumeration): binary search per draw, with the
    per-episode offsets precomputed outside the timing. Returns rows only."""

    def rows(flat, cum_valid, first_rows, capacity, length):
        episode = np.searchsorted(cum_valid, flat, side="right")
        starts = first_rows[episode] + flat - cum_before[episode]
        return (starts[:, None] + np.arange(length)) % capacity, None

    return rows


def window_rows_cached(
    starts: np.ndarray,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], tuple[np.ndarray, None]]:
    """numpy indexing into an array of every valid start kept between batches (8 bytes per
    step, rebuilt whenever an episode arrives or leaves; the rebuild is not timed). Returns
    rows only."""

    def rows(flat, cum_valid, first_rows, capacity, length):
        return (starts[flat][:, None] + np.arange(length)) % capacity, None

    return rows


def time_index_sampling(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per sampler: microseconds per batch of window indices with the uniform draw
    (``Generator.integers``) included and beyond it, and numba's speed-up on both."""
    steps, episodes = args.episode_steps, args.index_steps // args.episode_steps
    rng = np.random.default_rng(0)
    template = episode(steps, rng, pixels=False)
    replay = SequenceReplay(episodes * (steps + 1), args.sequence_length, seed=0)
    for _ in range(episodes):
        replay.add_episode(template)
    cum_valid, first_rows = replay._window_index()
    counts = np.diff(cum_valid, prepend=0)
    samplers = {
        "draw only": (lambda flat, *_: flat, args.repeats),
        "numba": (window_rows, args.repeats),
        "numpy (enumerate starts)": (window_rows_numpy, max(args.repeats // 100, 20)),
        "numpy (searchsorted)": (window_rows_searchsorted(cum_valid - counts), args.repeats),
        "numpy (cached start array)": (
            window_rows_cached(valid_starts_numpy(cum_valid, first_rows, replay.capacity_steps)),
            args.repeats,
        ),
    }
    args_ = (cum_valid, first_rows, replay.capacity_steps, args.sequence_length)
    window_rows(rng.integers(0, cum_valid[-1], size=args.batch), *args_)  # numba warm-up
    micros = {}
    for name, (sampler, repeats) in samplers.items():
        start = time.perf_counter()
        for _ in range(repeats):
            sampler(rng.integers(0, cum_valid[-1], size=args.batch), *args_)
        micros[name] = (time.perf_counter() - start) / repeats * 1e6
    draw, numba = micros.pop("draw only"), micros["numba"]
    return {
        "draw only": {"us_per_batch": draw},
        **{
            name: {
                "us_per_batch": value,
                "us_beyond_draw": value - draw,
                "numba_speedup": value / numba,
                "numba_speedup_beyond_draw": (value - draw) / (numba - draw),
            }
            for name, value in micros.items()
        },
    }


def pixel_replay(args: argparse.Namespace) -> tuple[SequenceReplay, dict[str, float]]:
    """Fill a pixel replay past its capacity; the bytes it holds (tracemalloc sees numpy's
    allocations) against the raw bytes of the frames it keeps."""
    rng = np.random.default_rng(1)
    sources = [episode(args.episode_steps, rng, pixels=True) for _ in range(4)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    replay = SequenceReplay(args.pixel_capacity, args.sequence_length, seed=0)
    added = int(1.5 * args.pixel_capacity / (args.episode_steps + 1))
    for index in range(added):
        replay.add_episode(sources[index % len(sources)])
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    frames = replay.num_steps + replay.num_episodes  # T+1 frames per episode
    raw = frames * int(np.prod(FRAME))
    return replay, {
        "episodes_added": added,
        "episodes_kept": replay.num_episodes,
        "frames_kept": frames,
        "raw_frame_mb": raw / 2**20,
        "replay_mb": held / 2**20,
        "ratio": held / raw,
    }


def sample_throughput(replay: SequenceReplay, args: argparse.Namespace) -> dict[str, float]:
    """Batches per second of ``replay.sample(batch)`` over about ``args.seconds``."""
    replay.sample(args.batch)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        batch = replay.sample(args.batch)
        count += 1
    elapsed = time.perf_counter() - start
    batch_mb = sum(array.nbytes for array in batch.values()) / 2**20
    return {
        "batches_per_s": count / elapsed,
        "batch_mb": batch_mb,
        "mb_per_s": count * batch_mb / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-steps", type=int, default=1_000_000)
    parser.add_argument("--episode-steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20_000)
    parser.add_argument("--pixel-capacity", type=int, default=50_000, help="rows (frames)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/replay.json"))
    args = parser.parse_args()

    sampling = time_index_sampling(args)
    replay, memory = pixel_replay(args)
    throughput = sample_throughput(replay, args)

    setting = (
        f"{args.index_steps:,} steps in episodes of {args.episode_steps}, "
        f"batch {args.batch} x length {args.sequence_length}"
    )
    print(f"(a) window-index sampling, {setting}")
    header = ("sampler", "us/batch", "speed-up", "beyond draw", "speed-up")
    print("    {:<26} {:>9} {:>9} {:>12} {:>9}".format(*header))
    print(f"    {'draw only':<26} {sampling['draw only']['us_per_batch']:>9.1f}")
    for name, row in list(sampling.items())[1:]:
        print(
            f"    {name:<26} {row['us_per_batch']:>9.1f} {row['numba_speedup']:>8.1f}x "
            f"{row['us_beyond_draw']:>12.1f} {row['numba_speedup_beyond_draw']:>8.1f}x"
        )
    print(
        f"(b) memory, 64x64 RGB episodes of {args.episode_steps} steps, "
        f"capacity {args.pixel_capacity:,} frames"
    )
    print(
        f"    kept {memory['episodes_kept']} of {memory['episodes_added']} episodes, "
        f"{memory['frames_kept']:,} frames: raw {memory['raw_frame_mb']:.1f} MiB, replay "
        f"{memory['replay_mb']:.1f} MiB, ratio {memory['ratio']:.3f}"
    )
    print(
        f"(c) sample({args.batch}) of {args.sequence_length}-frame pixel windows: "
        f"{throughput['batches_per_s']:.0f} batches/s "
        f"({throughput['batch_mb']:.1f} MiB each, {throughput['mb_per_s']:.0f} MiB/s)"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "settings": {key: str(value) for key, value in vars(args).items()},
        "index_sampling": sampling,
        "memory": memory,
        "sample_throughput": throughput,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
