"""The method registry: every learning rule declared once (`register(Method(...))` at the end of
its module in onchip_ff/methods/), and every list of methods — config choices, the learner
factory, the CLI's choices, the pipeline's and the accountant's coverage, the contract tests — read from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from common.errors import ConfigError

if TYPE_CHECKING:
    from onchip_ff.config import Config

ARCHS = ("mlp", "cnn", "resnet")


@dataclass(frozen=True)
class Method:
    """One learning rule.

    name: the value of objective.method.  objective: the frozen dataclass of its [objective] keys
    (units and meaning in its field comments; `method` as a class attribute).  learner: an
    nn.Module built as learner(cfg, input_shape, n_classes, generator) with train_step(x, y) ->
    {"loss": ...}, scores(x) -> (N, n_classes), .layers (the stack every Linear/Conv of which the
    simulator maps onto tiles) and .optimizers.  Capabilities: archs (model.arch values it
    trains), pipeline (its learner has prepare_input / train_layer: `onchip-ff pipeline` splits its
    layers over processes), sim (runs on hardware.backend = "sim"), memory (the accountant models
    its schedule: accountant/schedules.py under the same name, checked against the learner's real
    schedule by tests/test_methods.py), shortcuts (its learner joins model.shortcuts =
    "deeperforward" between layers)."""

    name: str
    objective: type
    learner: type
    archs: tuple[str, ...] = ARCHS
    pipeline: bool = False
    sim: bool = True
    memory: bool = True
    shortcuts: bool = False

    def __post_init__(self) -> None:
        if getattr(self.objective, "method", None) != self.name:
            raise ValueError(f"method {self.name!r}: its objective class must say method = {self.name!r}")
        if not set(self.archs) <= set(ARCHS) or not self.archs:
            raise ValueError(f"method {self.name!r}: archs must be a non-empty subset of {ARCHS}")


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method (once per name); returns it."""
    if method.name in REGISTRY and REGISTRY[method.name] != method:
        raise ValueError(f"method {method.name!r} registered twice")
    REGISTRY[method.name] = method
    return method


def _load() -> None:
    import onchip_ff.methods  # noqa: F401  (imports every method module, filling the registry)


def get(name: str) -> Method:
    _load()
    if name not in REGISTRY:
        raise ConfigError(f"objective.method must be one of {', '.join(repr(n) for n in REGISTRY)}, "
                          f"got {name!r}")
    return REGISTRY[name]


def names() -> list[str]:
    """Registered method names, in registration order."""
    _load()
    return list(REGISTRY)


def build_learner(cfg: Config, input_shape: tuple[int, ...], n_classes: int, generator: torch.Generator):
    """The learner of cfg.objective.method (train_step(x, y) -> metrics, scores(x) -> (N,
    n_classes)); with hardware.backend = "sim" every matrix product runs on simulated tiles
    (hw_models)."""
    method = get(cfg.objective.method)
    if cfg.model.arch not in method.archs:
        raise ConfigError(f"objective.method = {method.name!r} is implemented for model.arch = "
                          f"{' or '.join(repr(a) for a in method.archs)} only, got {cfg.model.arch!r}")
    if cfg.model.shortcuts != "none" and not method.shortcuts:
        takers = [m.name for m in REGISTRY.values() if m.shortcuts]
        raise ConfigError(f"model.shortcuts = {cfg.model.shortcuts!r} is implemented for objective.method = "
                          f"{' or '.join(repr(n) for n in takers)} only, got {method.name!r}")
    learner = method.learner(cfg, input_shape, n_classes, generator)
    if cfg.hardware.backend == "sim":
        if not method.sim:
            raise ConfigError(f"objective.method = {method.name!r} does not run on hardware.backend = 'sim'")
        from hw_models.torch_layers import attach_simulator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        learner.analog_modules = attach_simulator(learner, cfg.hardware.device, seed)
    return learner
