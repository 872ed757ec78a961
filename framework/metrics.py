"""Run logging: one CSV per metric group plus TensorBoard scalars, flushed row by row."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    """Writes scalars to ``<run_dir>/<group>.csv`` and to TensorBoard under ``<group>/<key>``.

    The first row of a group fixes its columns (``step`` first, then the keys in the order
    given); later rows must carry the same keys. Every row is flushed at once, so a killed run
    keeps everything logged before the kill.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._writers: dict[str, tuple[IO[str], csv.DictWriter]] = {}
        self._tensorboard = (
            SummaryWriter(str(self.run_dir / "tensorboard")) if tensorboard else None
        )

    def log(self, group: str, step: int, values: Mapping[str, float]) -> None:
        """Append one row ``step, *values`` to ``group``'s CSV and TensorBoard."""
        row = {"step": step, **{key: float(value) for key, value in values.items()}}
        if group not in self._writers:
            handle = open(self.run_dir / f"{group}.csv", "w", newline="")  # noqa: SIM115
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            self._writers[group] = (handle, writer)
        handle, writer = self._writers[group]
        if set(row) != set(writer.fieldnames):
            raise ValueError(
                f"metric group {group!r} was started with columns {writer.fieldnames}; "
                f"this row has {list(row)}. Log differing metrics under another group."
            )
        writer.writerow(row)
        handle.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(f"{group}/{key}", float(value), step)

    def close(self) -> None:
        """Close every file; call once at the end of a run."""
        for handle, _ in self._writers.values():
            handle.close()
        self._writers.clear()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_log(path: Path | str) -> list[dict[str, str]]:
    """The rows of a run's CSV log (``offline.csv``, ``evaluation.csv``, ...) as dicts."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))
