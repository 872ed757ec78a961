"""The component registry: kind -> name -> factory, filled by plugins."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.errors import UserInputError
from framework.interfaces import (
    Algorithm,
    DynamicsEnsemble,
    Encoder,
    EnvFactory,
    Planner,
    UncertaintyEstimator,
)

#: Each kind of component and the interface its factories must return.
KINDS: dict[str, type] = {
    "encoder": Encoder,
    "dynamics": DynamicsEnsemble,
    "uncertainty": UncertaintyEstimator,
    "planner": Planner,
    "env": EnvFactory,
    "algo": Algorithm,
}


class RegistryError(UserInputError):
    """A component could not be registered or found; the message says what to do."""


@dataclass(frozen=True)
class Registration:
    """One registered component: its factory and the plugin that registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str


class ComponentRegistry:
    """Maps ``(kind, name)`` to a factory (usually a class implementing the kind's interface).

    Plugins add components through :meth:`add`; algorithms build them with :meth:`build`.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, name: str, factory: Callable[..., Any], *, plugin: str) -> None:
        """Register ``factory`` as ``name`` of ``kind``; ``plugin`` names who registers it."""
        if kind not in KINDS:
            raise RegistryError(
                f"plugin '{plugin}' registers {name!r} under unknown kind {kind!r}; "
                f"kinds are: {', '.join(KINDS)}"
            )
        interface = KINDS[kind]
        if isinstance(factory, type) and not issubclass(factory, interface):
            raise RegistryError(
                f"plugin '{plugin}' registers {kind} {name!r} as {factory.__qualname__}, "
                f"which does not subclass {interface.__name__}"
            )
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise RegistryError(
                f"{kind} {name!r} is registered twice: by plugin '{existing.plugin}' and by "
                f"plugin '{plugin}'. Uninstall one of them or rename one component."
            )
        self._entries[kind][name] = Registration(kind, name, factory, plugin)

    def names(self, kind: str) -> list[str]:
        """Sorted names registered under ``kind``."""
        return sorted(self._kind(kind))

    def entries(self, kind: str) -> Iterator[Registration]:
        """Registrations of ``kind``, sorted by name."""
        entries = self._kind(kind)
        return (entries[name] for name in sorted(entries))

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``name`` of ``kind``."""
        entries = self._kind(kind)
        if name not in entries:
            valid = ", ".join(sorted(entries)) or "(none)"
            raise RegistryError(f"no {kind} named {name!r} is registered; valid names: {valid}")
        return entries[name].factory

    def build(self, kind: str, cfg: DictConfig | Mapping[str, Any], **extra: Any) -> Any:
        """Build a component from its config: ``cfg.name`` picks the factory, the other keys
        and ``extra`` (things only known at run time, such as action bounds) are its arguments."""
        params = (
            OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        )
        if "name" not in params:
            raise RegistryError(f"the {kind} config has no 'name' key: {params}")
        factory = self.get(kind, params.pop("name"))
        _check_argument_types(kind, factory, params)
        try:
            return factory(**params, **extra)
        except TypeError as error:
            raise RegistryError(f"cannot build {kind} from config {params}: {error}") from error

    def _kind(self, kind: str) -> dict[str, Registration]:
        if kind not in self._entries:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        return self._entries[kind]


def _check_argument_types(kind: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Reject config values whose type contradicts the factory's annotation (``int``, ``float``,
    ``bool``, ``str``, optionally ``| None``), naming the key, before anything is built."""
    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        return
    accepted = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}
    for key, value in params.items():
        hint = hints.get(key)
        allowed = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
        if len(allowed) != 1 or allowed[0] not in accepted or value is None:
            continue
        expected = allowed[0]
        ok = isinstance(value, accepted[expected]) and (
            expected is bool or not isinstance(value, bool)
        )
        if not ok:
            raise RegistryError(
                f"{kind}.{key} must be {expected.__name__}; got {value!r} "
                f"({type(value).__name__}). Fix the override or the {kind} config."
            )
