"""Run outputs: CSV logs that survive a kill, atomic checkpoints."""

import csv

import pytest
import torch

from framework.checkpoint import load_checkpoint, save_checkpoint
from framework.metrics import RunLogger


def test_logger_rows_are_on_disk_before_close(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log("episodes", step=10, values={"return": 1.5})
    logger.log("episodes", step=20, values={"return": 2.5})
    with open(tmp_path / "episodes.csv") as file:  # read while the run is still open
        rows = list(csv.DictReader(file))
    assert rows == [{"step": "10", "return": "1.5"}, {"step": "20", "return": "2.5"}]
    with pytest.raises(ValueError, match="started with columns"):
        logger.log("episodes", step=30, values={"loss": 0.1})
    logger.close()


def test_checkpoint_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.arange(3), "episode": 4})
    loaded = load_checkpoint(path)
    assert loaded["episode"] == 4 and torch.equal(loaded["weights"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"episode": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("interrupted mid-write")

    with pytest.raises(RuntimeError, match="interrupted"):
        save_checkpoint(path, {"episode": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["episode"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_corrupt_checkpoint_is_named(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt"):
        load_checkpoint(path)
