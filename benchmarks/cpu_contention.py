"""MOTO's state-based agent updates per second with the machine to itself and beside other
runs, under four OpenMP settings: torch's one thread per core with libgomp's default wait
policy (idle threads spin), the same with ``OMP_WAIT_POLICY=PASSIVE`` or a short
``GOMP_SPINCOUNT``, and one thread (what ``framework run`` uses unless told otherwise,
``threads=`` in ``configs/config.yaml``).

With one thread per core and another process holding a core, each parallel region waits at its
barrier for a thread that is not scheduled while its siblings spin on the other cores.

    python benchmarks/cpu_contention.py [--neighbours 1] [--seconds 10]
    # prints a table, writes benchmarks/results/cpu_contention.json

Each figure is one `benchmarks/moto_speed.py --obs states --head-rows` process (default sizes,
16×50 batches); each neighbour is the same script on one thread, updating without end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SPEED_SCRIPT = Path(__file__).with_name("moto_speed.py")
# cleared from each measured process's environment, so that a setting sets only what it names
OPENMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SETTINGS = {
    "default (spin)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def speed_command(seconds: float, out: Path) -> list[str]:
    """moto_speed's state figures only (no heads), timed ``seconds`` each, written to ``out``."""
    script = [sys.executable, str(SPEED_SCRIPT), "--obs", "states", "--head-rows"]
    return [*script, "--seconds", str(seconds), "--out", str(out)]


def agent_speed(setting: dict[str, str], seconds: float) -> dict[str, float]:
    """moto_speed's state figures in a fresh process with these OpenMP variables."""
    env = {key: value for key, value in os.environ.items() if key not in OPENMP_VARIABLES}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "speed.json"
        command = speed_command(seconds, out)
        subprocess.run(command, env={**env, **setting}, check=True, capture_output=True)
        return json.loads(out.read_text())["states"]


def with_neighbours(count: int, setting: dict[str, str], seconds: float) -> dict[str, float]:
    """agent_speed while ``count`` one-thread runs of the same updates go on beside it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = speed_command(1e9, Path(os.devnull))
    neighbours = [subprocess.Popen(command, env=env) for _ in range(count)]
    try:
        return agent_speed(setting, seconds)
    finally:
        for neighbour in neighbours:
            neighbour.kill()
            neighbour.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neighbours", type=int, default=1, help="runs beside (1 thread each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per figure")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_contention.json"))
    args = parser.parse_args()
    rows = [
        {
            "setting": name,
            "neighbours": neighbours,
            **with_neighbours(neighbours, env, args.seconds),
        }
        for neighbours in (0, args.neighbours)
        for name, env in SETTINGS.items()
    ]
    print(f"MOTO agent updates from states, {os.cpu_count()} CPUs")
    print(f"{'OpenMP setting':<26}{'runs beside':>12}{'updates / s':>14}{'model updates / s':>20}")
    for row in rows:
        print(
            f"{row['setting']:<26}{row['neighbours']:>12}{row['updates_per_s']:>14.2f}"
            f"{row['world_model_updates_per_s']:>20.2f}"
        )
    results = {"settings": {**vars(args), "out": str(args.out), "cpus": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**results, "rows": rows}, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
