"""The noise-model contract: one physical effect per model, acting on device conductances.

Every model is a frozen dataclass of numbers (units in field names) with a citation.  A device is
an ordered tuple of models; a crossbar keeps, for each polarity of its differential pairs, one
conductance array g_uS (one element per device) plus a `state` dict of per-device arrays that
later stages need (drift exponents, stuck masks, ...).  Stages, each the identity by default:

  program(g_target_uS, gmax_uS, rng, state) -> (g_uS, state)   writing target conductances;
                                             `state` (None for new devices) is the state of an
                                             earlier write: properties of the physical device
                                             (stuck masks, gmax spread, step spreads) are kept
                                             from it, not drawn again
  drift(g_prog_uS, state, t_s)              -> g_uS            deterministic given state, t >= 0
  read_sigma_uS(g_uS, state, t_s)           -> std per device of one read (None = no read noise);
                                             with `frozen_read` True the crossbar draws that
                                             noise once per evaluation time and keeps
                                             max(g + sigma xi, 0), else afresh at every MVM
  update(g_uS, dg_uS, gmax_uS, state, rng)  -> g_uS            applying a requested change
  enforce(g_uS, state)                      -> g_uS            re-impose hard faults after any write

`moments(stage, ...)` gives the documented per-device mean and std of each stage's output: the
contract test draws >= 1e5 samples and compares.  `example()` is an instance with typical noise,
`zero()` one whose stages reduce exactly to the identity (ideal device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

STAGES = ("program", "drift", "read", "update")


@dataclass(frozen=True)
class NoiseModel:
    name: ClassVar[str] = "ideal"
    citation: ClassVar[str] = "no noise: every stage is the identity"
    stages: ClassVar[frozenset[str]] = frozenset()

    # ---- stages (identity defaults) -------------------------------------------------------
    def program(self, g_target_uS: np.ndarray, gmax_uS: float | np.ndarray, rng: np.random.Generator,
                state: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return np.array(g_target_uS, dtype=np.float32, copy=True), {}

    def drift(self, g_prog_uS: np.ndarray, state: dict[str, np.ndarray], t_s: float) -> np.ndarray:
        return g_prog_uS

    def read_sigma_uS(self, g_uS: np.ndarray, state: dict[str, np.ndarray],
                      t_s: float) -> np.ndarray | None:
        return None

    @property
    def frozen_read(self) -> bool:
        """True: the read noise is drawn once per evaluation time and kept (clamped at 0); False: a
        fresh draw at every read."""
        return False

    def update(self, g_uS: np.ndarray, dg_uS: np.ndarray, gmax_uS: float | np.ndarray,
               state: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return np.clip(g_uS + dg_uS, 0.0, gmax_uS).astype(np.float32)

    def enforce(self, g_uS: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        return g_uS

    # ---- documentation of the statistics, for the contract test ---------------------------
    def moments(self, stage: str, g_uS: np.ndarray, gmax_uS: float, t_s: float = 0.0,
                dg_uS: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Documented (mean, std) per device of the stage's output (read: of g + read noise)."""
        if stage == "update":
            return np.clip(g_uS + dg_uS, 0.0, gmax_uS), np.zeros_like(g_uS)
        return g_uS, np.zeros_like(g_uS)

    @classmethod
    def example(cls) -> "NoiseModel":
        return cls()

    @classmethod
    def zero(cls) -> "NoiseModel":
        return cls()


@dataclass(frozen=True)
class Ideal(NoiseModel):
    """The ideal device: exact programming, no drift, no read noise, exact updates."""
