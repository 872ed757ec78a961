"""Offline datasets: our on-disk format, a Minari reader, and collection from scripted policies."""

from framework.data.format import (
    Dataset,
    DatasetWriter,
    Episode,
    load_dataset,
    observation_entries,
    observation_spec,
    succeeded,
)
from framework.data.minari import load_minari

__all__ = [
    "Dataset",
    "DatasetWriter",
    "Episode",
    "load_dataset",
    "load_minari",
    "observation_entries",
    "observation_spec",
    "succeeded",
]
