"""Run logging: one CSV per metric group plus TensorBoard scalars, flushed row by row."""

from __future__ import annotations

import csv
import io
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from torch.utils.tensorboard import SummaryWriter

from framework.atomic import atomic_write_bytes


class RunLogger:
    """Writes scalars to ``<run_dir>/<group>.csv`` and to TensorBoard under ``<group>/<key>``.

    The first row of a group fixes its columns (``step`` first, then the keys in the order
    given); later rows must carry the same keys. Every row is flushed at once, so a killed run
    keeps everything logged before the kill.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self._writers: dict[str, tuple[IO[str], csv.DictWriter]] = {}
        self._tensorboard_wanted = tensorboard
        self._tensorboard: SummaryWriter | None = None

    def log(self, group: str, step: int, values: Mapping[str, float]) -> None:
        """Append one row ``step, *values`` to ``group``'s CSV and TensorBoard. Nothing is
        written before the first row; a CSV already in the folder (a resumed run) is
        appended to."""
        row = {"step": step, **{key: _number(value) for key, value in values.items()}}
        if group not in self._writers:
            self._writers[group] = self._open(group, list(row))
        handle, writer = self._writers[group]
        if set(row) != set(writer.fieldnames):
            raise ValueError(
                f"metric group {group!r} was started with columns {writer.fieldnames}; "
                f"this row has {list(row)}. Log differing metrics under another group."
            )
        writer.writerow(row)
        handle.flush()
        if self._tensorboard_wanted:
            if self._tensorboard is None:
                self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
            for key, value in values.items():
                self._tensorboard.add_scalar(f"{group}/{key}", float(value), step)

    def _open(self, group: str, columns: list[str]) -> tuple[IO[str], csv.DictWriter]:
        path = self.run_dir / f"{group}.csv"
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as file:
                columns = next(csv.reader(file))
            handle = open(path, "a", newline="")  # noqa: SIM115
            return handle, csv.DictWriter(handle, fieldnames=columns)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", newline="")  # noqa: SIM115
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        return handle, writer

    def keep_rows(self, group: str, keep: Callable[[int, Mapping[str, str]], bool]) -> None:
        """Rewrite ``group``'s CSV (atomically) with only the rows ``(index, row)`` that ``keep``
        accepts, and without a row cut short by a kill: a resumed run rolls its logs back to
        its checkpoint. Call before the group's first row of this run."""
        path = self.run_dir / f"{group}.csv"
        if group in self._writers or not path.is_file():
            return
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            columns = list(reader.fieldnames or [])
            complete = [
                row for row in reader if None not in row.values() and "" not in row.values()
            ]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(row for index, row in enumerate(complete) if keep(index, row))
        atomic_write_bytes(path, text.getvalue().encode())

    def close(self) -> None:
        """Close every file; call once at the end of a run."""
        for handle, _ in self._writers.values():
            handle.close()
        self._writers.clear()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _number(value: float) -> int | float:
    """Counts (episode, seed, updates) stay integers in the CSV; everything else is a float."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def read_log(path: Path | str) -> list[dict[str, str]]:
    """The rows of a run's CSV log (``offline.csv``, ``evaluation.csv``, ...) as dicts."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))
