"""Standard-normal and uniform draws for the simulator's hot spots (read/output noise per MVM,
programming noise, pulse rounding).

Every array is filled by a counter-based kernel (hw_models/kernels/normal.py: ziggurat normals and
uniforms from splitmix64 keyed by (key, index)) on all cores, from one uint64 key drawn from the
caller's Generator: the numbers depend on the Generator's state and the array size only, never on
the machine's core count, and a key costs one draw whatever the array size (256k normals: 0.38 ms
on 2 cores against 2.2 ms for numpy's single-threaded Generator.standard_normal, measured here).
"""

from __future__ import annotations

import numpy as np

from hw_models.kernels.normal import fill_normal, fill_uniform
from hw_models.kernels.quantize import seed_key


class NormalSource:
    """standard_normal(shape) -> float32 draws from one child generator of `rng` (its own stream,
    so draws for reads never shift the parent's programming draws)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.stream = rng.spawn(1)[0]

    def states(self) -> list[dict]:
        """[generator_state() of the stream] (to save and restore a source)."""
        return [generator_state(self.stream)]

    def set_states(self, states: list[dict]) -> None:
        if len(states) != 1:
            raise ValueError(f"{len(states)} stream states for a source of one stream (a state saved "
                             "by an older onchip-ff, whose sources had 4)")
        self.stream = restore_generator(states[0])

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 normals of this shape (an empty shape draws no key)."""
        return _fill(fill_normal, self.stream, np.empty(shape, np.float32))


def standard_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """n float32 standard normals of the stream keyed by one uint64 drawn from rng (none for n = 0)."""
    return _fill(fill_normal, rng, np.empty(n, np.float32))


def uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """n float32 uniforms in [0, 1) (grid 2**-24) of the stream keyed by one uint64 drawn from rng
    (none for n = 0)."""
    return _fill(fill_uniform, rng, np.empty(n, np.float32))


def _fill(kernel, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    return kernel(seed_key(rng), out) if out.size else out


def generator_state(rng: np.random.Generator) -> dict:
    """Everything that decides rng's future draws, spawns included, as plain values: the bit
    generator's state and its SeedSequence (entropy, spawn key, pool size, children spawned)."""
    ss = rng.bit_generator.seed_seq
    return {"bit_generator": rng.bit_generator.state, "entropy": ss.entropy, "spawn_key": list(ss.spawn_key),
            "pool_size": ss.pool_size, "n_children_spawned": ss.n_children_spawned}


def restore_generator(state: dict) -> np.random.Generator:
    """A Generator that draws and spawns exactly as the one generator_state() saw."""
    ss = np.random.SeedSequence(state["entropy"], spawn_key=tuple(state["spawn_key"]),
                                pool_size=state["pool_size"], n_children_spawned=state["n_children_spawned"])
    bg = getattr(np.random, state["bit_generator"]["bit_generator"])(ss)
    bg.state = state["bit_generator"]
    return np.random.Generator(bg)
