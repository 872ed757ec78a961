"""Our offline dataset format: a folder with ``manifest.json`` and one ``.npz`` file per episode.

Layout (``docs/datasets.md`` is the full description)::

    root/
      manifest.json              schema_version, metadata, spec, episodes [{file, length, sha256}]
      episodes/episode_000000.npz

The manifest lists only complete episode files: every file and then the manifest are written to
a temporary file beside their target, fsynced and renamed over it, so a writer killed at any
point leaves a folder that loads (a stray ``.*.tmp`` file is ignored).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from framework.atomic import atomic_write_bytes, remove_leftovers
from framework.errors import UserInputError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
EPISODES_DIR = "episodes"

Episode = dict[str, np.ndarray]

#: Every key an episode may hold, with the dtype the episode convention fixes for it.
LAYOUT_DTYPES = {
    "action": "float32",
    "reward": "float32",
    "terminated": "bool",
    "truncated": "bool",
    "success": "bool",
    "obs.state": "float32",
    "obs.pixels": "uint8",
}
STEP_KEYS = ("action", "reward", "terminated", "truncated", "success")  # T rows each
OBS_KEYS = ("obs.state", "obs.pixels")  # T + 1 rows each, the first from reset
#: Number of dimensions of one step's value for each key.
_STEP_NDIM = {"action": 1, "obs.state": 1, "obs.pixels": 3}


class ArraySpec(NamedTuple):
    """dtype name and per-step shape of one episode key, e.g. ``("uint8", (3, 64, 64))``."""

    dtype: str
    shape: tuple[int, ...]


Spec = dict[str, ArraySpec]


@dataclass
class Dataset:
    """Episodes in memory, with the metadata and spec they were stored with."""

    episodes: list[Episode]
    metadata: dict[str, Any] = field(default_factory=dict)
    spec: Spec = field(default_factory=dict)
    source: str = "the dataset"  # where it was read from, for error messages

    def __len__(self) -> int:
        return len(self.episodes)

    def check_compatible(
        self, action_dim: int | None = None, obs_spec: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        """Raise :class:`UserInputError` unless actions have ``action_dim`` entries and the
        observation keys and per-step shapes equal ``obs_spec`` (see :func:`observation_spec`)."""
        if action_dim is not None and self.spec and self.spec["action"].shape != (action_dim,):
            raise UserInputError(
                f"{self.source} has actions of size {self.spec['action'].shape[0]}, but the env "
                f"takes {action_dim}: use a dataset collected on this env (or pick the env it was "
                f"collected on: {_describe(self.metadata)})."
            )
        if obs_spec is None or not self.spec:
            return
        ours = {key: self.spec[key].shape for key in OBS_KEYS if key in self.spec}
        wanted = {key: tuple(shape) for key, shape in obs_spec.items()}
        if ours != wanted:
            raise UserInputError(
                f"{self.source} holds observations {ours}, but the env gives {wanted}: collect the "
                f"dataset with the same observation mode and image size as the env "
                f"({_describe(self.metadata)})."
            )


def _describe(metadata: Mapping[str, Any]) -> str:
    keys = ("task", "env", "obs", "image_size")
    return ", ".join(f"{key}={metadata[key]}" for key in keys if key in metadata) or "unknown"


def observation_spec(space: gym.Space) -> dict[str, tuple[int, ...]]:
    """Episode observation keys and per-step shapes of an env with this observation space: a
    float Box gives ``obs.state``, a uint8 Box ``obs.pixels``, a ``{state, pixels}`` Dict both."""
    spaces = space.spaces.values() if isinstance(space, gym.spaces.Dict) else [space]
    if not all(isinstance(sub, gym.spaces.Box) for sub in spaces):
        raise UserInputError(f"observation space {space} does not fit the episode layout")
    return {"obs.pixels" if sub.dtype == np.uint8 else "obs.state": sub.shape for sub in spaces}


def observation_entries(observation: np.ndarray | Mapping[str, np.ndarray]) -> Episode:
    """One observation as episode entries: ``{"obs.state": float32 (D,)}`` and/or
    ``{"obs.pixels": uint8 (3, H, W)}``, from an env's vector, image or ``{state, pixels}`` dict."""
    if isinstance(observation, Mapping):
        entries: Episode = {}
        for value in observation.values():
            entries.update(observation_entries(value))
        return entries
    observation = np.asarray(observation)
    if observation.dtype == np.uint8:
        return {"obs.pixels": observation}
    return {"obs.state": observation.astype(np.float32)}


def succeeded(episode: Mapping[str, np.ndarray]) -> bool:
    """Whether ``episode`` reached success at any step (its ``success`` column)."""
    return bool(np.any(episode["success"]))


def spec_of(episode: Episode) -> Spec:
    """The spec an episode implies: each key's dtype and per-step shape."""
    return {
        key: ArraySpec(str(array.dtype), tuple(array.shape[1:])) for key, array in episode.items()
    }


def episode_problem(episode: Mapping[str, np.ndarray], spec: Spec) -> str | None:
    """What is wrong with ``episode`` under the episode layout and ``spec``; None if nothing."""
    keys = set(episode)
    if keys != set(spec):
        return f"holds keys {sorted(keys)}, the dataset's spec has {sorted(spec)}"
    if unknown := keys - set(LAYOUT_DTYPES):
        return f"holds unknown keys {sorted(unknown)}; allowed: {sorted(LAYOUT_DTYPES)}"
    if missing := [key for key in STEP_KEYS if key not in keys]:
        return f"lacks {missing}"
    if not keys & set(OBS_KEYS):
        return f"holds no observations (one of {list(OBS_KEYS)})"
    steps = len(episode["action"])
    if steps == 0:
        return "has no steps"
    for key, array in episode.items():
        rows = steps + 1 if key in OBS_KEYS else steps
        if str(array.dtype) != spec[key].dtype or spec[key].dtype != LAYOUT_DTYPES[key]:
            return (
                f"{key} has dtype {array.dtype}; the spec says {spec[key].dtype}, the episode "
                f"layout needs {LAYOUT_DTYPES[key]}"
            )
        if array.ndim != 1 + _STEP_NDIM.get(key, 0) or array.shape[1:] != tuple(spec[key].shape):
            return f"{key} has shape {array.shape}, expected {(rows, *spec[key].shape)}"
        if len(array) != rows:
            return f"{key} has {len(array)} rows, expected {rows} for {steps} steps"
    if "obs.pixels" in episode and episode["obs.pixels"].shape[1] != 3:
        return f"obs.pixels has shape {episode['obs.pixels'].shape}, expected channel-first RGB"
    return None


def _spec_to_json(spec: Spec) -> dict[str, Any]:
    return {key: {"dtype": item.dtype, "shape": list(item.shape)} for key, item in spec.items()}


class DatasetWriter:
    """Appends episodes to a dataset folder, creating it (with an empty manifest) if needed.

    The first episode ever written fixes the spec; later ones, also those of a later writer on the
    same folder, must match it. ``metadata`` (JSON-serialisable) is stored in the manifest; on an
    existing dataset a key already stored must keep its value.
    """

    def __init__(self, root: Path | str, metadata: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        metadata = json.loads(json.dumps(dict(metadata or {})))  # as it will read back
        if (self.root / MANIFEST).exists():
            manifest = _read_manifest(self.root)
            clashes = {
                key: (manifest["metadata"][key], value)
                for key, value in metadata.items()
                if key in manifest["metadata"] and manifest["metadata"][key] != value
            }
            if clashes:
                raise UserInputError(
                    f"dataset {self.root} was collected with other settings "
                    f"(stored, given): {clashes}; write to another folder or use the same settings."
                )
            manifest["metadata"].update(metadata)
        else:
            manifest = {"schema_version": SCHEMA_VERSION, "metadata": metadata, "spec": {}}
            manifest["episodes"] = []
        self._metadata = manifest["metadata"]
        self._spec = _spec_from_json(manifest["spec"], self.root)
        self._episodes: list[dict[str, Any]] = manifest["episodes"]
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        self._write_manifest()

    def _remove_leftovers(self) -> None:
        """Delete what a writer killed mid-write leaves behind: temporary files, and an episode
        file stored before its manifest entry (it would be rewritten as the next episode)."""
        listed = {entry["file"] for entry in self._episodes}
        for path in (self.root / EPISODES_DIR).iterdir():
            if f"{EPISODES_DIR}/{path.name}" not in listed:
                path.unlink()
        remove_leftovers(self.root)

    def __len__(self) -> int:
        return len(self._episodes)

    def write(self, episode: Mapping[str, np.ndarray]) -> Path:
        """Validate ``episode`` (layout in ``docs/datasets.md``), store it as the next episode
        file and list it in the manifest; returns the file's path."""
        episode = {key: np.asarray(array) for key, array in episode.items()}
        spec = self._spec or spec_of(episode)
        if problem := episode_problem(episode, spec):
            raise ValueError(f"episode {len(self._episodes)} for {self.root}: {problem}")
        buffer = io.BytesIO()
        np.savez(buffer, **episode)
        data = buffer.getvalue()
        name = f"{EPISODES_DIR}/episode_{len(self._episodes):06d}.npz"
        atomic_write_bytes(self.root / name, data)
        self._spec = spec
        self._episodes.append(
            {"file": name, "length": len(episode["action"]), "sha256": _sha256(data)}
        )
        self._write_manifest()
        return self.root / name

    def _write_manifest(self) -> None:
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "metadata": self._metadata,
            "spec": _spec_to_json(self._spec),
            "episodes": self._episodes,
        }
        atomic_write_bytes(self.root / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_REGENERATE = "regenerate the dataset with `framework collect ...` (or restore it from a copy)"


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise UserInputError(f"dataset folder {root} does not exist: check the path.")
    if not path.is_file():
        raise UserInputError(
            f"{root} has no {MANIFEST}, so it is not a dataset folder: point at a folder written "
            "by `framework collect` (for Minari datasets use the Minari reader)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path} is corrupt ({error}): {_REGENERATE}.") from error
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        version = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise UserInputError(
            f"{path} has schema version {version!r}; this framework reads version "
            f"{SCHEMA_VERSION}: {_REGENERATE}, or use the framework version that wrote it."
        )
    fields = {"metadata": dict, "spec": dict, "episodes": list}
    if bad := [key for key, kind in fields.items() if not isinstance(manifest.get(key), kind)]:
        raise UserInputError(f"{path} is corrupt (missing or malformed {bad}): {_REGENERATE}.")
    return manifest


def _spec_from_json(spec: Mapping[str, Any], root: Path) -> Spec:
    try:
        return {
            key: ArraySpec(str(item["dtype"]), tuple(item["shape"])) for key, item in spec.items()
        }
    except (KeyError, TypeError) as error:
        raise UserInputError(
            f"{root / MANIFEST} has a malformed spec ({error!r}): {_REGENERATE}."
        ) from error


def _load_episode(root: Path, entry: Mapping[str, Any], spec: Spec) -> Episode:
    try:
        name, length, digest = str(entry["file"]), int(entry["length"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserInputError(
            f"{root / MANIFEST} has a malformed episode entry {entry!r}: {_REGENERATE}."
        ) from error
    path = root / name
    if not path.is_file():
        raise UserInputError(f"episode file {path} listed in {MANIFEST} is missing: {_REGENERATE}.")
    data = path.read_bytes()
    if _sha256(data) != digest:
        raise UserInputError(
            f"episode file {path} is truncated or corrupt (sha256 mismatch): {_REGENERATE}."
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            episode = {key: arrays[key] for key in arrays.files}
    except Exception as error:  # numpy/zipfile raise many types for a damaged archive
        raise UserInputError(
            f"episode file {path} is unreadable ({error}): {_REGENERATE}."
        ) from error
    if problem := episode_problem(episode, spec):
        raise UserInputError(
            f"episode file {path} does not match the spec: it {problem}; {_REGENERATE}."
        )
    if len(episode["action"]) != length:
        raise UserInputError(
            f"episode file {path} has {len(episode['action'])} steps, the manifest "
            f"says {length}: {_REGENERATE}."
        )
    return episode


def load_dataset(
    root: Path | str,
    *,
    action_dim: int | None = None,
    obs_spec: Mapping[str, Sequence[int]] | None = None,
) -> Dataset:
    """Load and verify a dataset folder written by :class:`DatasetWriter`.

    Checks the schema version, each listed file's presence and sha256, and each episode's keys,
    dtypes and shapes against the spec; with ``action_dim`` / ``obs_spec`` (per-step shapes by
    observation key, see :func:`observation_spec`) also that the dataset fits the env. Any failure
    raises :class:`UserInputError` naming the file and what to do.
    """
    root = Path(root)
    manifest = _read_manifest(root)
    spec = _spec_from_json(manifest["spec"], root)
    episodes = [_load_episode(root, entry, spec) for entry in manifest["episodes"]]
    dataset = Dataset(episodes, manifest["metadata"], spec, source=str(root))
    dataset.check_compatible(action_dim, obs_spec)
    return dataset
