"""Lists the options of every config group across the Hydra search path."""

from __future__ import annotations

from collections import defaultdict
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

PRIMARY_CONFIGS = "pkg://framework.configs"


def _root(searchpath: str) -> Traversable:
    scheme, _, location = searchpath.partition("://")
    if scheme == "pkg":
        return resources.files(location.replace("/", "."))
    if scheme == "file":
        return Path(location)
    raise ValueError(f"config search path {searchpath!r} must start with pkg:// or file://")


def group_options(searchpaths: list[str]) -> dict[str, list[str]]:
    """``{group: sorted option names}`` for the top-level groups of every config root."""
    options: dict[str, set[str]] = defaultdict(set)
    for searchpath in [PRIMARY_CONFIGS, *searchpaths]:
        for group in _root(searchpath).iterdir():
            if not group.is_dir() or group.name.startswith(("_", ".")):
                continue
            for entry in group.iterdir():
                if entry.name.endswith(".yaml"):
                    options[group.name].add(entry.name.removesuffix(".yaml"))
    return {group: sorted(names) for group, names in sorted(options.items())}
