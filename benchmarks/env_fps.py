"""MetaWorld step+render frames per second: our wrapper stack (``MetaWorldEnvFactory``, pixels
mode) against a raw ``mujoco.Renderer`` drawing the same model, camera and size after each
step of MetaWorld's own env, with shadows and reflections on and off. State-only steps per
second are given for reference. Each arm runs ``--rounds`` times, interleaved (the machine may
be shared); the table shows the best round. Prints a table and writes the figures to JSON.

    python benchmarks/env_fps.py --frames 200 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np

from framework.library.metaworld_env import HORIZON, MetaWorldEnvFactory
from framework.library.wrappers import set_render_effects

TASK = "door-open-v3"


def _rate(step: Callable[[np.ndarray], object], reset: Callable[[], object], steps: int) -> float:
    """Calls of ``step`` per second over ``steps`` random actions, with an untimed ``reset``
    before each run of at most :data:`HORIZON` steps (MetaWorld's episode length)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4)).astype(np.float32)
    elapsed = 0.0
    for first in range(0, steps, HORIZON):
        reset()
        start = time.perf_counter()
        for action in actions[first : first + HORIZON]:
            step(action)
        elapsed += time.perf_counter() - start
    return steps / elapsed


def ours(frames: int, size: int, camera: str, effects: bool) -> float:
    factory = MetaWorldEnvFactory(
        task=TASK,
        obs_mode="pixels",
        image_size=size,
        camera=camera,
        shadows=effects,
        reflections=effects,
    )
    env = factory.make(0)
    try:
        return _rate(env.step, env.reset, frames)
    finally:
        env.close()


def raw(frames: int, size: int, camera: str, effects: bool) -> float:
    env = gym.make("Meta-World/MT1", env_name=TASK, seed=0, disable_env_checker=True)
    model, data = env.unwrapped.model, env.unwrapped.data
    set_render_effects(model, effects, effects)
    renderer = mujoco.Renderer(model, size, size)

    def step(action: np.ndarray) -> None:
        env.step(action)
        renderer.update_scene(data, camera)
        renderer.render()

    try:
        return _rate(step, env.reset, frames)
    finally:
        renderer.close()
        env.close()


def state_only(steps: int) -> float:
    env = MetaWorldEnvFactory(task=TASK).make(0)
    try:
        return _rate(env.step, env.reset, steps)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--camera", default="corner4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/env_fps.json"))
    args = parser.parse_args()
    rows = []
    for effects in (False, True):
        # Shadow maps make a CPU frame several times slower: fewer frames keep rounds short.
        frames = args.frames // 4 if effects else args.frames
        best = {"ours": 0.0, "raw": 0.0}
        for _ in range(args.rounds):
            for arm, measure in (("ours", ours), ("raw", raw)):
                rate = measure(frames, args.size, args.camera, effects)
                best[arm] = max(best[arm], rate)
        rows.append(
            {
                "shadows_reflections": effects,
                "frames": frames,
                **best,
                "ours_over_raw": best["ours"] / best["raw"],
            }
        )
    state = max(state_only(args.frames * 2) for _ in range(args.rounds))
    print(
        f"\nMetaWorld {TASK}, {args.size}x{args.size} camera {args.camera}, best of {args.rounds}"
    )
    print(f"{'shadows+reflections':>20}{'ours fps':>10}{'raw fps':>10}{'ours/raw':>10}")
    for row in rows:
        print(
            f"{'on' if row['shadows_reflections'] else 'off':>20}{row['ours']:>10.1f}"
            f"{row['raw']:>10.1f}{row['ours_over_raw']:>10.2f}"
        )
    print(f"state-only steps/s (no rendering): {state:.0f}")
    settings = {"task": TASK, "size": args.size, "camera": args.camera, "rounds": args.rounds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"settings": settings, "step_render": rows, "state_steps_per_s": state}, indent=2
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
