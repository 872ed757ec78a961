"""Compose a run config in Python, as ``framework run`` does from the command line."""

from __future__ import annotations

import re

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from framework.config_groups import PRIMARY_CONFIGS
from framework.plugins import load_plugins

#: Groups declared in the primary defaults list with no default. Hydra would reject the
#: `+group=option` spelling for them ("multiple values"), so it is rewritten `group=option`.
OPTIONAL_GROUPS = ("algo", "experiment")


def prepare_overrides(overrides: list[str], plugin_searchpaths: list[str]) -> list[str]:
    """Rewrite ``+algo=``/``+experiment=`` to ``algo=``/``experiment=`` and put the plugins'
    config roots (merged with any ``hydra.searchpath=[...]`` given) first in the list."""
    prepared = [re.sub(rf"^\+({'|'.join(OPTIONAL_GROUPS)})=", r"\1=", item) for item in overrides]
    searchpaths = list(plugin_searchpaths)
    for item in [item for item in prepared if item.startswith("hydra.searchpath=")]:
        prepared.remove(item)
        given = item.split("=", 1)[1].strip("[]").split(",")
        searchpaths += [path.strip() for path in given if path.strip()]
    flags, overrides_only = _split_flags(prepared)
    if searchpaths:
        overrides_only.insert(0, f"hydra.searchpath=[{','.join(searchpaths)}]")
    # Flags first: Hydra's argument parser takes no override once a flag has followed one.
    return flags + overrides_only


#: Hydra flags that take a value; `--info` takes one only from its list of topics.
_VALUE_FLAGS = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _split_flags(arguments: list[str]) -> tuple[list[str], list[str]]:
    flags: list[str] = []
    overrides: list[str] = []
    position = 0
    while position < len(arguments):
        item = arguments[position]
        takes_value = item in _VALUE_FLAGS or (
            item in ("--info", "-i")
            and position + 1 < len(arguments)
            and arguments[position + 1] in _INFO_TOPICS
        )
        if item.startswith("-") and "=" not in item:
            flags += arguments[position : position + 1 + takes_value]
            position += 1 + takes_value
        else:
            overrides.append(item)
            position += 1
    return flags, overrides


def compose_config(overrides: list[str]) -> DictConfig:
    """The config that ``framework run OVERRIDES`` composes, plugins' config roots included."""
    prepared = prepare_overrides(overrides, load_plugins().searchpaths)
    with initialize_config_module(PRIMARY_CONFIGS.removeprefix("pkg://"), version_base="1.3"):
        return compose("config", overrides=prepared)
