"""Reader for datasets in Minari's HDF5 format (minari 0.5), mapped to our episode layout.

What we read, as written by minari 0.5's ``HDF5Storage`` (``minari/dataset/_storages/
hdf5_storage.py``) and ``MinariStorage`` (``minari/dataset/minari_storage.py``)::

    <dataset>/data/metadata.json     JSON: data_format ("hdf5"), total_episodes, total_steps,
                                     observation_space / action_space (serialised), env_spec, ...
    <dataset>/data/main_data.hdf5    one group per episode, ``episode_0``, ``episode_1``, ...:
        observations   (T+1, ...) dataset, or a group of them per key for Dict spaces (nested)
        actions        (T, A)
        rewards        (T,)
        terminations   (T,)
        truncations    (T,)
        infos          group of datasets, only when recorded (the reset info is row 0: T+1 rows)

Dict observations flatten into ``obs.state`` by concatenating their leaves, each flattened per
step, in sorted key order at every level (h5py's iteration order, and gymnasium's ``Dict`` space
order), e.g. Franka Kitchen: ``achieved_goal/<task>...``, ``desired_goal/<task>...``,
``observation``. The order is stored in the dataset's metadata as ``obs_state_keys``.
``success`` comes from ``infos/success`` when present, else it is all false. Only continuous
(Box) actions and non-image observations are read; minari itself is not needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from framework.data.format import Dataset, Episode, episode_problem, spec_of
from framework.errors import UserInputError

METADATA_FILE = "metadata.json"
MAIN_FILE = "main_data.hdf5"
_REFETCH = "download the dataset again (e.g. `minari download <dataset_id>`)"


def _data_dir(path: Path) -> Path:
    """The folder holding ``metadata.json``: ``path`` itself or its ``data`` sub-folder."""
    for folder in (path / "data", path):
        if (folder / METADATA_FILE).is_file():
            return folder
    raise UserInputError(
        f"{path} is not a Minari dataset: neither it nor {path / 'data'} holds {METADATA_FILE}. "
        "Point at the dataset folder (e.g. ~/.minari/datasets/D4RL/kitchen/complete-v2)."
    )


def _leaves(node: h5py.Group | h5py.Dataset, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """``(key path, array)`` for every dataset under ``node``, keys sorted at every level."""
    if isinstance(node, h5py.Dataset):
        return [(prefix, node[()])]
    return [
        leaf
        for key in sorted(node.keys())
        for leaf in _leaves(node[key], f"{prefix}/{key}" if prefix else key)
    ]


def _episode(group: h5py.Group) -> tuple[Episode, list[str]]:
    """One episode group as our episode, with the key order of ``obs.state``'s columns."""
    leaves = _leaves(group["observations"])
    if any(array.dtype == np.uint8 and array.ndim >= 3 for _, array in leaves):
        raise UserInputError("image observations are not supported by the Minari reader")
    actions = group["actions"][()]
    if actions.ndim != 2:
        raise UserInputError(f"actions of shape {actions.shape}: only Box actions are supported")
    state = np.concatenate([array.reshape(len(array), -1) for _, array in leaves], axis=1)
    steps = len(actions)
    infos = group["infos"] if "infos" in group else {}
    success = infos["success"][()] if "success" in infos else np.zeros(steps, bool)
    episode = {
        "action": actions.astype(np.float32),
        "reward": group["rewards"][()].astype(np.float32),
        "terminated": group["terminations"][()].astype(bool),
        "truncated": group["truncations"][()].astype(bool),
        "success": success[len(success) - steps :].astype(bool),  # drop the reset row if any
        "obs.state": state.astype(np.float32),
    }
    return episode, [key for key, _ in leaves]


def load_minari(
    path: Path | str,
    *,
    action_dim: int | None = None,
    obs_spec: Mapping[str, Sequence[int]] | None = None,
) -> Dataset:
    """Read a Minari HDF5 dataset (its folder or its ``data`` folder) as a :class:`Dataset`;
    ``action_dim`` / ``obs_spec`` are checked as in :func:`framework.data.load_dataset`."""
    folder = _data_dir(Path(path))
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(
            f"{folder / METADATA_FILE} is corrupt ({error}): {_REFETCH}."
        ) from error
    if metadata.get("data_format", "hdf5") != "hdf5":
        raise UserInputError(
            f"{folder} holds Minari data in format {metadata['data_format']!r}; only 'hdf5' is "
            "read: convert it with minari or collect the dataset in hdf5 format."
        )
    file_path = folder / MAIN_FILE
    episodes, obs_keys = [], []
    try:
        with h5py.File(file_path, "r") as file:
            names = sorted((name for name in file if name.startswith("episode_")), key=_index)
            for name in names:
                episode, obs_keys = _episode(file[name])
                spec = spec_of(episodes[0] if episodes else episode)
                if problem := episode_problem(episode, spec):
                    raise UserInputError(f"episode {name} {problem}")
                episodes.append(episode)
    except UserInputError as error:
        raise UserInputError(f"Minari file {file_path}: {error}") from error
    except (OSError, KeyError, ValueError) as error:  # what h5py raises for damaged files
        raise UserInputError(
            f"Minari file {file_path} is truncated, corrupt or not in Minari's layout ({error}): "
            f"{_REFETCH}."
        ) from error
    metadata = {"format": "minari", **metadata, "obs_state_keys": obs_keys}
    dataset = Dataset(episodes, metadata, spec_of(episodes[0]) if episodes else {}, str(path))
    dataset.check_compatible(action_dim, obs_spec)
    return dataset


def _index(name: str) -> int:
    return int(name.removeprefix("episode_"))
