"""Registers the baselines bundle and its config folder."""

from __future__ import annotations

from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.plugins import hookimpl
from framework.registry import ComponentRegistry
from framework_baselines.bc import BC
from framework_baselines.iql import IQL
from framework_baselines.mbpo import MBPO
from framework_baselines.pets import PETS


@hookimpl
def register_components(registry: ComponentRegistry, plugin: str) -> None:
    registry.add("algo", "pets", PETS, plugin=plugin)
    registry.add("algo", "bc", BC, plugin=plugin)
    registry.add("algo", "iql", IQL, plugin=plugin)
    registry.add("algo", "mbpo", MBPO, plugin=plugin)
    # The core's latent-model agent as it stands is the Dreamer-style baseline; with a reward
    # penalty and the offline phase only (configs/algo/lompo.yaml), the LOMPO-style one.
    registry.add("algo", "dreamer", LatentOfflineToOnline, plugin=plugin)
    registry.add("algo", "lompo", LatentOfflineToOnline, plugin=plugin)


@hookimpl
def config_searchpath() -> str:
    return "pkg://framework_baselines.configs"
