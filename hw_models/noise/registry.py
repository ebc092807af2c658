"""Registry of noise models by name: `register` as a class decorator, `get`, `names`."""

from __future__ import annotations

from common.errors import ConfigError

from hw_models.noise.base import Ideal, NoiseModel

REGISTRY: dict[str, type[NoiseModel]] = {}


def register(cls: type[NoiseModel]) -> type[NoiseModel]:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"noise model name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


register(Ideal)


def get(name: str) -> type[NoiseModel]:
    import hw_models.noise  # noqa: F401  (imports every model module, filling the registry)
    if name not in REGISTRY:
        raise ConfigError(f"unknown noise model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def names() -> list[str]:
    import hw_models.noise  # noqa: F401
    return sorted(REGISTRY)
