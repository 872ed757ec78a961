"""Config sections read into typed settings dataclasses, with clear errors for bad values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import UserInputError

Settings = TypeVar("Settings")


def typed_settings(
    cls: type[Settings], section: DictConfig | Mapping[str, Any], where: str
) -> Settings:
    """``cls(**fields)`` from the keys of ``section`` that name fields of the dataclass ``cls``
    (other keys are left to their owners), each checked and converted by OmegaConf against
    the field's type. ``where`` names the section in errors, e.g. ``algo`` (empty: the top
    level)."""
    names = {field.name for field in dataclasses.fields(cls)}
    values = {key: section[key] for key in section if key in names}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
    except OmegaConfBaseException as error:
        key = getattr(error, "key", None) or getattr(error, "full_key", "?")
        name = f"{where}.{key}" if where else key
        raise UserInputError(
            f"{name}: {str(error).splitlines()[0]}. Fix the override or the config."
        ) from None
    return OmegaConf.to_object(merged)
