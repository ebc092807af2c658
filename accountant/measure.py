"""Measurement side of the memory accountant: live saved-for-backward bytes
(torch.autograd.graph.saved_tensors_hooks), peak allocated bytes over the training schedule
(torch.profiler memory events), torch.cuda.max_memory_allocated when a GPU is present, the
simulator's own buffers (array nbytes, tracemalloc) and BP with activation checkpointing
(torch.utils.checkpoint) as a learner that can be measured (the probe of `train`'s metrics.json is
accountant/probe.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tracemalloc
import weakref
from typing import Callable, Iterable

import torch
from torch.utils.checkpoint import checkpoint

from onchip_ff.methods.bp import Backprop


class CheckpointedBackprop(Backprop):
    """Backprop whose layers run in segments of `every` layers under reentrant
    torch.utils.checkpoint; the last segment is not checkpointed (as checkpoint_sequential).
    A zero-size tensor that requires grad is passed along so that parameters of a segment whose
    input needs no gradient (the data) still get theirs."""

    def __init__(self, cfg, input_shape, n_classes, generator, every: int = 1) -> None:
        super().__init__(cfg, input_shape, n_classes, generator)
        self.every = every
        self._dummy = torch.empty(0, requires_grad=True)

    def _run(self, x: torch.Tensor, _dummy: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.layers)
        for start in range(0, n, self.every):
            stop = min(start + self.every, n)
            if stop < n and torch.is_grad_enabled():
                x = checkpoint(self._run, x, self._dummy, start, stop, use_reentrant=True,
                               preserve_rng_state=False)
            else:
                x = self._run(x, self._dummy, start, stop)
        return self.head(x.flatten(1))


def build_memory_learner(cfg, method: str, input_shape, n_classes: int, generator: torch.Generator,
                         checkpoint_every: int = 0, free_grads: bool = True):
    """The learner of `method` ("bp_ckpt" = CheckpointedBackprop, segments of checkpoint_every
    layers, 0 = round(sqrt(depth))), on the simulator when hardware.backend = "sim"; free_grads
    False: its optimizers keep their .grad between steps (methods/local_update.py KEEP_GRADS; the
    learners free them after every step)."""
    from onchip_ff.methods.local_update import KEEP_GRADS
    learner = _build(cfg, method, input_shape, n_classes, generator, checkpoint_every)
    if not free_grads:
        for opt in learner.optimizers:
            setattr(opt, KEEP_GRADS, True)
    return learner


def _build(cfg, method, input_shape, n_classes, generator, checkpoint_every):
    from onchip_ff.methods import build_learner
    if method != "bp_ckpt":
        return build_learner(cfg, input_shape, n_classes, generator)
    from accountant.memory import checkpoint_segment
    every = checkpoint_segment(cfg.model.depth, checkpoint_every)
    learner = CheckpointedBackprop(cfg, input_shape, n_classes, generator, every)
    if cfg.hardware.backend == "sim":
        from hw_models.torch_layers import attach_simulator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        learner.analog_modules = attach_simulator(learner, cfg.hardware.device, seed)
    return learner


class _Held:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedBytesMeter:
    """saved_tensors_hooks that count live saved-for-backward bytes per unique storage, leaving
    out `exclude` (parameters, buffers, the data batch).  `act_itemsize` > 0 sizes every saved
    floating-point storage as codes of that many bytes plus one float32 scale per row (the
    fixed-point activation store of the accountant); other storages count their nbytes.  `size`
    replaces that sizing (the chip tally counts bits); `on_pack` is called after each save."""

    def __init__(self, exclude: Iterable[torch.Tensor] = (), act_itemsize: int = 0,
                 size: Callable[[torch.Tensor], int] | None = None,
                 on_pack: Callable[[], None] | None = None) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.act_itemsize = act_itemsize
        self.size = size or self._size  # what one saved storage counts (default: its bytes)
        self.on_pack = on_pack  # called after every tensor saved
        self.live: dict[int, list[int]] = {}
        self.cur = self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _size(self, t: torch.Tensor) -> int:
        nbytes = t.untyped_storage().nbytes()
        if self.act_itemsize and t.is_floating_point():
            rows = t.shape[0] if t.dim() else 1
            return nbytes // t.element_size() * self.act_itemsize + rows * 4
        return nbytes

    def _pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key in self.exclude or t.untyped_storage().nbytes() == 0:
            return t
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [self.size(t), 0]
            self.cur += entry[0]
            self.peak = max(self.peak, self.cur)
        entry[1] += 1
        held = _Held(t)
        weakref.finalize(held, self._release, key)
        if self.on_pack is not None:
            self.on_pack()
        return held

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.cur -= entry[0]
            del self.live[key]

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed

    def __enter__(self) -> "SavedBytesMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def storage_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes of the unique storages behind `tensors` (None skipped)."""
    seen = {}
    for t in tensors:
        if t is not None:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def optimizer_bytes(optimizers) -> int:
    return storage_bytes(v for opt in optimizers for state in opt.state.values()
                         for v in state.values() if isinstance(v, torch.Tensor))


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto prints start/stop lines on file descriptor 2; keep the terminal clean."""
    try:
        sys.stderr.flush()
        fd = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class ProfiledSteps:
    """torch.profiler memory profiling around a block of code; `step(i)` marks training steps.
    peaks(): per step, the highest CPU bytes allocated through PyTorch's allocator since the
    session began (allocations made before it are not seen: start it before building what
    you want counted, or add their bytes yourself)."""

    def __init__(self) -> None:
        from torch.profiler import ProfilerActivity, profile
        self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)

    def __enter__(self) -> "ProfiledSteps":
        with _quiet_stderr():
            self.prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        with _quiet_stderr():
            self.prof.__exit__(*exc)

    @staticmethod
    def step(i: int):
        return torch.profiler.record_function(f"memory-step-{i}")

    def peaks(self) -> list[int]:
        from torch._C._profiler import _EventType
        allocs, windows, stack = [], {}, list(self.prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            node = stack.pop()
            if node.tag == _EventType.Allocation:
                if node.extra_fields.device.type == "cpu":
                    allocs.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.ptr))
                continue
            if node.name.startswith("memory-step-"):
                windows[int(node.name.rsplit("-", 1)[1])] = (node.start_time_ns, node.end_time_ns)
            stack.extend(node.children)
        allocs.sort(key=lambda a: a[0])
        live: dict[int, int] = {}
        cur = 0
        peaks = {i: None for i in windows}
        for t_ns, size, ptr in allocs:
            if size > 0:
                live[ptr] = size
                cur += size
            elif ptr in live:
                cur -= live.pop(ptr)
            for i, (lo, hi) in windows.items():
                if lo <= t_ns <= hi:
                    peaks[i] = max(peaks[i] or 0, cur)
        return [peaks[i] or 0 for i in sorted(peaks)]


def cuda_peak(make: Callable[[str], tuple[object, torch.Tensor, torch.Tensor]],
              steps: int) -> tuple[int | None, str]:
    """torch.cuda.max_memory_allocated over `steps` train steps of make("cuda"), above what was
    allocated before; (None, reason) without a GPU or when the learner cannot run there.  The
    caching allocator rounds every block up to 512 bytes, so this is not byte-exact."""
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    try:
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        learner, x, y = make("cuda")
        for _ in range(steps):
            learner.train_step(x, y)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del learner, x, y
        return peak, ""
    except Exception as exc:  # the reference learners are written for CPU; report, do not fail
        return None, f"cuda run failed: {type(exc).__name__}: {exc}"


def sim_buffers(learner) -> dict[str, int]:
    """The simulator's own arrays: digital tiles' integer codes + per-output scales ("codes"),
    their float32 code cache ("sim_cache"); analog tiles' arrays all go to "sim_cache"."""
    out = {"codes": 0, "sim_cache": 0}
    for module in getattr(learner, "analog_modules", []):
        tile = module.tile
        if hasattr(tile, "codes"):
            out["codes"] += tile.codes.nbytes + tile.scale.nbytes
            if hasattr(tile, "_codes_f32"):  # (the torch engine keeps its codes as float32 values: no cache)
                out["sim_cache"] += tile._codes_f32.nbytes
        else:
            out["sim_cache"] += sum(v.nbytes for v in vars(tile).values() if hasattr(v, "nbytes"))
    return out


def measure(cfg, method: str, batch: int, steps: int = 2, checkpoint_every: int = 0,
            input_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10, seed: int = 0,
            act_itemsize: int = 0, with_cuda: bool = True, free_grads: bool = True) -> dict[str, object]:
    """Run `steps` training steps of random data of the given shape (memory depends on shapes
    only) and return the measured components (bytes), the profiler peak of the last step, the
    CUDA peak (or None) and, on the simulator, its buffers and tracemalloc peak."""
    gen = torch.Generator().manual_seed(seed)
    sim = cfg.hardware.backend == "sim"
    gc.collect()
    tracing = sim and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    try:
        with ProfiledSteps() as prof:
            learner = build_memory_learner(cfg, method, input_shape, n_classes, gen, checkpoint_every,
                                           free_grads)
            x = torch.randn((batch, *input_shape), generator=gen)
            y = torch.randint(0, n_classes, (batch,), generator=gen)
            exclude = [*learner.parameters(), *learner.buffers(), x, y]
            with SavedBytesMeter(exclude, act_itemsize) as meter:
                for i in range(steps):
                    if sim and i == steps - 1:
                        np_base = tracemalloc.get_traced_memory()[0]
                        tracemalloc.reset_peak()
                    with prof.step(i):
                        learner.train_step(x, y)
        np_peak = tracemalloc.get_traced_memory()[1] - np_base if sim else 0
    finally:
        if tracing:
            tracemalloc.stop()
    params = list(learner.parameters())
    tile_weights = {id(m.weight) for m in getattr(learner, "analog_modules", [])}
    buffers = sim_buffers(learner)
    float_params = [p for p in params if id(p) not in tile_weights or not buffers["codes"]]
    out: dict[str, object] = {
        "weights": storage_bytes([*float_params, *learner.buffers()]) + buffers["codes"],
        "master_copy": storage_bytes(p for p in params if id(p) in tile_weights) if buffers["codes"] else 0,
        "optimizer": optimizer_bytes(learner.optimizers),
        "inputs": storage_bytes([x, y]),
        "activations": meter.peak,
        "gradients": storage_bytes(p.grad for p in params),
        "peak": prof.peaks()[-1],
    }
    if sim:
        out["sim_cache"] = buffers["sim_cache"]
        out["sim_numpy_peak"] = np_peak
    if with_cuda:
        def make(device: str):
            g = torch.Generator().manual_seed(seed)
            lrn = build_memory_learner(cfg, method, input_shape, n_classes, g, checkpoint_every,
                                       free_grads).to(device)
            return lrn, torch.randn((batch, *input_shape), device=device), \
                torch.randint(0, n_classes, (batch,), device=device)
        out["cuda_peak"], out["cuda_note"] = (cuda_peak(make, steps) if not sim
                                              else (None, "simulator runs on CPU"))
    del learner
    return out
