"""Measurement side of the chip view (accountant/chip.py): a tally the simulator keeps of the
buffers a chip would need during a real training step — live saved tensors, error vectors,
weight gradients and states per role, element counts x the format's bits — sampled at every
tensor autograd saves and after every backward node, its peak compared with predict_chip.

Roles are read off the run, not off the accountant: saved tensors through
torch.autograd.graph.saved_tensors_hooks (parameters, buffers and the batch left out); gradients
from post-hooks on every node of every graph handed to torch.autograd.backward (checkpoint
recomputations included), a gradient whose next node accumulates it into a parameter being a
weight gradient and any other an error vector (a checkpoint's detached segment input is a leaf,
its gradient an error), and from a TorchDispatchMode that sees every tensor an op
makes inside the backward pass with grad mode off (the sums autograd makes when it accumulates two
gradients of one tensor out of place are seen nowhere else until their node runs); each alive
until its storage is freed (StorageWeakRef; no reference is held, so autograd frees and steals as
it would without the tally); parameters' .grad as weight gradients; the arrays from the tiles
themselves.
"""

from __future__ import annotations

import contextlib

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from accountant.chip import CHIP_COMPONENTS, INDEX_BITS, STATIC, ChipBits
from accountant.measure import SavedBytesMeter, build_memory_learner, optimizer_bytes, storage_bytes
from accountant.tape import CHIP_ROLES

ACCUMULATE = "torch::autograd::AccumulateGrad"


def _numel(t: torch.Tensor) -> int:
    """Elements of t's whole storage (a view counts what it keeps alive)."""
    return t.untyped_storage().nbytes() // t.element_size()


def _count(a) -> int:
    """Elements of a numpy array or a tensor (a tile's arrays on either engine)."""
    return a.numel() if isinstance(a, torch.Tensor) else int(a.size)


def _bits(t: torch.Tensor, per_float: int) -> int:
    """Bits per element of a dtype in the chip's buffers: floats at the given width, bool 1,
    integer indices INDEX_BITS."""
    if t.is_floating_point():
        return per_float
    return 1 if t.dtype == torch.bool else INDEX_BITS


class _BackwardOutputs(TorchDispatchMode):
    """Every tensor an op makes while a backward pass runs with grad mode off is a gradient (or a
    formula's temporary, freed before the next sample)."""

    def __init__(self, tally: "ChipTally") -> None:
        super().__init__()
        self.tally = tally

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.tally.in_backward and not torch.is_grad_enabled():
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes():
                    self.tally._track(t, "errors")
        return out


class ChipTally:
    """Live chip-buffer bits of `learner` (on the simulator) while the context is entered; the
    batch (x, y) it trains on is staged input.  After exit: at_peak, role_peak, peak_bits,
    array_weights, array_devices (the fields of accountant.chip.ChipPrediction)."""

    def __init__(self, learner, x: torch.Tensor, y: torch.Tensor, bits: ChipBits) -> None:
        self.learner, self.bits = learner, bits
        modules = self.modules = getattr(learner, "analog_modules", [])
        self.array_params = {id(m.weight) for m in modules}
        self.array_weights = sum(m.weight.numel() for m in modules)
        self.array_devices = sum(sum(_count(g) for g in m.tile.g_prog) if hasattr(m.tile, "g_prog")
                                 else _count(m.tile.codes) for m in modules)
        self.params = list(learner.parameters())
        self.param_ids = {id(p) for p in self.params}
        self.static = dict.fromkeys(STATIC, 0)
        self.static["inputs"] = x.numel() * bits.act_bits + y.numel() * bits.label_bits
        ranges = sum(_count(m.tile.w_max if hasattr(m.tile, "w_max") else m.tile.scale) for m in modules)
        digital = [p for p in self.params if id(p) not in self.array_params]
        self.static["digital_params"] = ranges * 32 + 8 * storage_bytes([*digital, *learner.buffers()])
        self.static["optimizer"] = 8 * optimizer_bytes(learner.optimizers)
        self.meter = SavedBytesMeter([*self.params, *learner.buffers(), x, y],
                                     size=lambda t: _numel(t) * _bits(t, bits.act_bits), on_pack=self.sample)
        self.grads: dict[int, tuple[StorageWeakRef, int, str]] = {}  # storage -> (ref, numel, role)
        self.peak_bits = 0
        self.at_peak: dict[str, int] = {}
        self.role_peak = dict.fromkeys(CHIP_COMPONENTS, 0)
        self.in_backward = 0
        self.current: set[int] = set()  # storages of the gradients the node just run takes and makes
        self._stack = contextlib.ExitStack()

    # -- sampling ---------------------------------------------------------------------------------
    def _live(self) -> dict[str, int]:
        numel = dict.fromkeys(("errors", "weight_grads"), 0)
        seen = set()
        for p in self.params:
            if p.grad is not None:
                key = p.grad.untyped_storage().data_ptr()
                if key not in seen:
                    seen.add(key)
                    numel["weight_grads"] += _numel(p.grad)
        # a pulse-stepped array's (x, d) wait in module.pending for the step that turns them into
        # pulses; on a chip the pulses leave with the backward of the layer, so what pending keeps
        # alive beyond that node is not a buffer
        waiting = {t.untyped_storage().data_ptr() for m in self.modules if m.pending is not None
                   for t in m.pending} - self.current
        for key, (ref, n, role) in list(self.grads.items()):
            if ref.expired():
                del self.grads[key]
            elif key not in seen and key not in waiting:
                seen.add(key)
                numel[role] += n
        return {**self.static, "activations": self.meter.cur, "errors": numel["errors"] * self.bits.err_bits,
                "weight_grads": numel["weight_grads"] * self.bits.grad_bits}

    def sample(self) -> None:
        live = self._live()
        for role, v in live.items():
            self.role_peak[role] = max(self.role_peak[role], v)
        total = sum(live.values())
        if total > self.peak_bits:
            self.peak_bits, self.at_peak = total, live

    # -- gradients --------------------------------------------------------------------------------
    def _track(self, g: torch.Tensor | None, role: str) -> None:
        """g's storage is a gradient of `role` from now until it is freed (a weight gradient stays
        one); storages of parameters, buffers, the batch and saved tensors are never gradients."""
        if g is None:
            return
        s = g.untyped_storage()
        key = s.data_ptr()
        if key in self.meter.exclude or key in self.meter.live:
            return
        old = self.grads.get(key)
        if old is None or old[0].expired():
            self.grads[key] = (StorageWeakRef(s), s.nbytes() // g.element_size(), role)
        elif role == "weight_grads" and old[2] != role:
            self.grads[key] = (old[0], old[1], role)

    def _hook_graph(self, roots) -> None:
        stack, seen = [r.grad_fn for r in roots if r.grad_fn is not None], set()
        while stack:
            node = stack.pop()
            if node is None or node in seen or node.name() == ACCUMULATE:
                continue
            seen.add(node)
            dest = tuple(n is not None and n.name() == ACCUMULATE and id(n.variable) in self.param_ids
                         for n, _ in node.next_functions)
            node.register_hook(self._post_hook(dest))
            stack.extend(n for n, _ in node.next_functions)

    def _post_hook(self, dest: tuple[bool, ...]):
        def post(grad_inputs, grad_outputs):
            for g in grad_outputs:
                self._track(g, "errors")
            for g, to_param in zip(grad_inputs, dest):
                self._track(g, "weight_grads" if to_param else "errors")
            self.current = {g.untyped_storage().data_ptr() for g in (*grad_inputs, *grad_outputs)
                            if g is not None}
            self.sample()
            self.current = set()
        return post

    def _backward(self, original):
        def backward(tensors, *args, **kwargs):
            self._hook_graph([tensors] if isinstance(tensors, torch.Tensor) else list(tensors))
            self.in_backward += 1
            try:
                return original(tensors, *args, **kwargs)
            finally:
                self.in_backward -= 1
        return backward

    def __enter__(self) -> "ChipTally":
        original = torch.autograd.backward
        torch.autograd.backward = self._backward(original)
        self._stack.callback(setattr, torch.autograd, "backward", original)
        self._stack.enter_context(self.meter)
        self._stack.enter_context(_BackwardOutputs(self))
        self.sample()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def tally(cfg, method: str, batch: int, bits: ChipBits, steps: int = 2, checkpoint_every: int = 0,
          input_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10, seed: int = 0,
          free_grads: bool = True) -> ChipTally:
    """Train `steps` steps of the learner of `method` on the simulator (cfg.hardware.backend must
    be "sim") on random data of the given shape and return the tally of the last step."""
    if cfg.hardware.backend != "sim":
        raise ValueError("the chip tally runs on the simulator (hardware.backend = 'sim')")
    gen = torch.Generator().manual_seed(seed)
    learner = build_memory_learner(cfg, method, input_shape, n_classes, gen, checkpoint_every, free_grads)
    x = torch.randn((batch, *input_shape), generator=gen)
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    for _ in range(steps - 1):
        learner.train_step(x, y)
    with ChipTally(learner, x, y, bits) as t:
        learner.train_step(x, y)
    return t
