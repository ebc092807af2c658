"""Learning rules, one module each (its [objective] dataclass, its learner, its registration);
importing this package registers them all, in this order (the order of every list of methods).
The registry: onchip_ff/methods/registry.py."""

from onchip_ff.methods.registry import REGISTRY, Method, build_learner, get, names, register  # noqa: F401
from onchip_ff.methods import df  # noqa: F401,E402
from onchip_ff.methods import ff  # noqa: F401,E402
from onchip_ff.methods import deeperforward  # noqa: F401,E402
from onchip_ff.methods import intff  # noqa: F401,E402
from onchip_ff.methods import sff  # noqa: F401,E402
from onchip_ff.methods import bp  # noqa: F401,E402
