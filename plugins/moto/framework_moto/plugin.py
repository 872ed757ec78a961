"""Registers the MOTO bundle and its config folder."""

from __future__ import annotations

from framework.plugins import hookimpl
from framework.registry import ComponentRegistry
from framework_moto.moto import MOTO


@hookimpl
def register_components(registry: ComponentRegistry, plugin: str) -> None:
    registry.add("algo", "moto", MOTO, plugin=plugin)


@hookimpl
def config_searchpath() -> str:
    return "pkg://framework_moto.configs"
