"""Noise models, one physical effect per module; importing this package registers them all."""

from hw_models.noise.registry import REGISTRY, get, names, register  # noqa: F401
from hw_models.noise import pulsed_constant  # noqa: F401,E402
from hw_models.noise import pulsed_nonlinear  # noqa: F401,E402
from hw_models.noise import gaussian_read  # noqa: F401,E402
from hw_models.noise import gaussian_weight  # noqa: F401,E402
from hw_models.noise import gmax_variability  # noqa: F401,E402
from hw_models.noise import pcm  # noqa: F401,E402
from hw_models.noise import stuck_at  # noqa: F401,E402
from hw_models.noise import weight_quantization  # noqa: F401,E402
