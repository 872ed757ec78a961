"""Plugin discovery: pluggy hookspecs and the manager that loads entry points.

A plugin is a module with ``@hookimpl`` functions, published under the entry-point group
``framework.plugins``. The built-in component library and bundles load the same way as any
third-party package.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pluggy

from framework.registry import ComponentRegistry

ENTRY_POINT_GROUP = "framework.plugins"

hookspec = pluggy.HookspecMarker("framework")
hookimpl = pluggy.HookimplMarker("framework")


class PluginSpec:
    """What a plugin may provide."""

    @hookspec
    def register_components(self, registry: ComponentRegistry, plugin: str) -> None:
        """Add components with ``registry.add(kind, name, factory, plugin=plugin)``."""

    @hookspec
    def config_searchpath(self) -> str | None:
        """A Hydra config root holding the plugin's config groups, e.g. ``pkg://mypkg.configs``."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and the distribution that installed it."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class LoadedPlugins:
    """Everything the plugins provided."""

    plugins: list[PluginInfo]
    registry: ComponentRegistry
    searchpaths: list[str]


@cache
def load_plugins() -> LoadedPlugins:
    """Load every installed plugin once; build the registry and collect config roots."""
    manager = pluggy.PluginManager("framework")
    manager.add_hookspecs(PluginSpec)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    registry = ComponentRegistry()
    # Each implementation is called on its own so that the registry knows which plugin
    # registered what, and can name both sides of a clash.
    for impl in manager.hook.register_components.get_hookimpls():
        impl.function(registry=registry, plugin=impl.plugin_name)
    searchpaths = [path for path in manager.hook.config_searchpath() if path]
    infos = [
        PluginInfo(manager.get_name(plugin), dist.metadata["name"], dist.version)
        for plugin, dist in manager.list_plugin_distinfo()
    ]
    return LoadedPlugins(sorted(infos, key=lambda info: info.name), registry, searchpaths)
