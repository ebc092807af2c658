"""Noise models, one physical effect per module; importing this package registers them all."""

from hw_models.noise.registry import REGISTRY, get, names, register  # noqa: F401
