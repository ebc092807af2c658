"""Symbolic autograd tape of the memory accountant: tensors are byte counts with reference counts;
ops record what autograd saves for backward and what their backward allocates.  Replaying a
training step on the tape gives the live bytes over time, their peak, and the live
saved-for-backward bytes (activations).

Semantics mirror PyTorch's CPU engine: an op's output is freed when its last holder (a Python
variable, a saved reference, a pending gradient) goes; backward visits nodes in reverse creation
order (the order of its ready queue for the graphs we build), allocates the gradients of the
inputs that need one, accumulates into an existing gradient buffer in place when that buffer has
no other holder (out of place otherwise), lets AccumulateGrad steal a fresh parameter gradient,
then frees the node's incoming gradient and its saved tensors.

With a ChipLedger the tape also keeps the chip view (accountant/chip.py): live bits of saved
activations, error vectors (gradients of non-parameters) and weight-gradient accumulators
(parameter gradients), sized per element by the ledger's bit widths, and their peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

PASS = -1  # a gradient that is the incoming gradient itself (add, views): no allocation


@dataclass
class ChipLedger:
    """Live bits per chip role over a replayed step (accountant/chip.py).  Saved float32 tensors
    count act_bits per element, saved bool masks (1 byte) 1 bit, saved integer indices (8 bytes)
    index_bits; gradients err_bits (errors) or grad_bits (weight gradients).  `static`: bits that
    stay live all step (inputs, digital parameters, optimizer state), added to every total."""

    act_bits: int
    err_bits: int
    grad_bits: int
    index_bits: int
    static: int = 0
    live: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHIP_ROLES, 0))
    peak: int = 0  # highest static + sum(live)
    at_peak: dict[str, int] = field(default_factory=dict)  # live bits per role at that peak
    role_peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHIP_ROLES, 0))

    def saved_bits(self, t: "Tensor") -> int:
        per = {4: self.act_bits, 1: 1, 8: self.index_bits}.get(t.itemsize, 8 * t.itemsize)
        return t.numel * per

    def grad_bits_of(self, t: "Tensor", role: str) -> int:
        return t.numel * (self.grad_bits if role == "weight_grads" else self.err_bits)

    def begin(self, static: int) -> None:
        """The steady state before the step: `static` bits live all step, kept gradients (if any)
        already live; the peak starts there."""
        self.static = static
        self.peak, self.at_peak, self.role_peak = static + sum(self.live.values()), dict(self.live), dict(self.live)

    def add(self, role: str, bits: int) -> None:
        self.live[role] += bits
        self.role_peak[role] = max(self.role_peak[role], self.live[role])
        total = self.static + sum(self.live.values())
        if total > self.peak:
            self.peak, self.at_peak = total, dict(self.live)


CHIP_ROLES = ("activations", "errors", "weight_grads")


@dataclass
class Tensor:
    numel: int
    itemsize: int = 4
    rows: int = 1  # leading dimension (the batch for activations): one scale per row when packed
    kind: str = "tmp"  # "tmp" (activation/temporary), "param", "input", "state"
    requires_grad: bool = False
    refs: int = 0
    saved_by: int = 0
    alive: bool = True
    role: str = ""  # chip role of a gradient: "errors" or "weight_grads"

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclass
class Node:
    out: int
    inputs: tuple[int, ...]
    grads: tuple[int, ...]  # bytes of the gradient sent to each input; 0 = none, PASS = grad_out itself
    saved: tuple[int, ...]
    bwd_peak: int  # highest bytes above the node's start while its backward runs (its grads included)
    fn: Callable[[int], None] | None = None  # custom backward (checkpoint recomputation) given grad_out


@dataclass
class Tape:
    """Live-bytes bookkeeping.  `pack`: None keeps saved activations as they are (float32); a pair
    (bytes per element, scale bytes per row) stores every saved float activation that way instead
    (fixed-point activation storage), unpacking a float32 copy while its node runs backward."""

    pack: tuple[int, int] | None = None
    chip: ChipLedger | None = None
    tensors: dict[int, Tensor] = field(default_factory=dict)
    cur: int = 0
    peak: int = 0
    peak_phase: str = ""
    phase: str = "setup"
    no_grad: bool = False
    saved_live: int = 0
    saved_peak: int = 0
    nodes: list[Node] = field(default_factory=list)
    grad: dict[int, int] = field(default_factory=dict)  # tensor -> its pending gradient tensor
    param_grad: dict[int, int] = field(default_factory=dict)  # parameter -> its .grad tensor
    # the schedule as replayed: ("forward", layer index) and ("step", optimizer index) in order,
    # compared with the learners' real schedule by tests/test_methods.py
    events: list[tuple[str, int]] = field(default_factory=list)
    _next: int = 0

    # -- allocation ---------------------------------------------------------------------------
    def _bump(self) -> None:
        if self.cur > self.peak:
            self.peak, self.peak_phase = self.cur, self.phase

    def spike(self, nbytes: int) -> None:
        """Transient bytes on top of what is live, freed before the next event."""
        if self.cur + nbytes > self.peak:
            self.peak, self.peak_phase = self.cur + nbytes, self.phase

    def new(self, numel: int, itemsize: int = 4, rows: int = 1, kind: str = "tmp",
            requires_grad: bool = False) -> int:
        """Allocate a tensor held by one Python reference; returns its id."""
        tid = self._next
        self._next += 1
        self.tensors[tid] = Tensor(int(numel), itemsize, int(rows), kind, requires_grad, refs=1)
        self.cur += self.tensors[tid].nbytes
        self._bump()
        return tid

    def like(self, tid: int, requires_grad: bool = False) -> int:
        t = self.tensors[tid]
        return self.new(t.numel, t.itemsize, t.rows, requires_grad=requires_grad)

    def hold(self, tid: int) -> int:
        self.tensors[tid].refs += 1
        return tid

    def drop(self, tid: int | None) -> None:
        if tid is None:
            return
        t = self.tensors[tid]
        t.refs -= 1
        if t.refs == 0:
            self.cur -= t.nbytes
            if t.role and self.chip is not None:
                self.chip.live[t.role] -= self.chip.grad_bits_of(t, t.role)
            t.alive = False
            if t.saved_by == 0:
                del self.tensors[tid]

    def nbytes(self, tid: int) -> int:
        return self.tensors[tid].nbytes

    # -- saved tensors --------------------------------------------------------------------------
    def saved_bytes(self, tid: int) -> int:
        t = self.tensors[tid]
        if self.pack is not None and t.kind == "tmp" and t.itemsize == 4:
            return t.numel * self.pack[0] + t.rows * self.pack[1]
        return t.nbytes

    def save(self, tid: int) -> None:
        """A node keeps tid for backward (parameters and buffers are not counted)."""
        t = self.tensors[tid]
        if t.kind in ("param", "state"):  # parameters and buffers are not activations
            return
        t.saved_by += 1
        if t.saved_by > 1:
            return
        packed = self.pack is not None and t.kind == "tmp" and t.itemsize == 4
        if t.kind != "input":
            self.saved_live += self.saved_bytes(tid)
            self.saved_peak = max(self.saved_peak, self.saved_live)
            if self.chip is not None:
                self.chip.add("activations", self.chip.saved_bits(t))
        if packed:
            self.cur += self.saved_bytes(tid)
            self._bump()
        else:
            t.refs += 1

    def unsave(self, tid: int) -> None:
        t = self.tensors[tid]
        if t.kind in ("param", "state"):
            return
        t.saved_by -= 1
        if t.saved_by > 0:
            return
        packed = self.pack is not None and t.kind == "tmp" and t.itemsize == 4
        if t.kind != "input":
            self.saved_live -= self.saved_bytes(tid)
            if self.chip is not None:
                self.chip.live["activations"] -= self.chip.saved_bits(t)
        if packed:
            self.cur -= self.saved_bytes(tid)
            if not t.alive:
                del self.tensors[tid]
        else:
            self.drop(tid)

    # -- ops ----------------------------------------------------------------------------------
    def requires(self, tid: int) -> bool:
        return self.tensors[tid].requires_grad

    def op(self, inputs: tuple[int, ...], out: tuple[int, int, int] | int | None,
           saves: tuple[int, ...] = (), new_saved: tuple[tuple[int, int, int], ...] = (),
           grads: tuple[int, ...] = (), fwd_peak: int = 0, bwd_peak: int = 0,
           save_out: bool = False) -> int | None:
        """Run one op forward.  out: (numel, itemsize, rows), or an int = float32 numel with the
        rows of the first input.  new_saved: extra tensors the op creates only for backward
        (pool indices, dropout masks, batch-norm statistics).  grads: bytes per input (0 when the
        input needs none; ignored for inputs that do not require grad); save_out: the op keeps its
        own result (relu, norm, log_softmax).  fwd_peak / bwd_peak: highest bytes above the op's
        starting point while it runs (output or gradients included; 0 = just those).  Returns the
        output id."""
        self.spike(fwd_peak)
        need = not self.no_grad and any(self.requires(i) for i in inputs)
        extra = [self.new(*spec) for spec in new_saved]
        oid = None
        if out is not None:
            shape = (out, 4, self.tensors[inputs[0]].rows) if isinstance(out, int) else out
            oid = self.new(*shape, requires_grad=need)
        if need:
            own = (oid,) if save_out and oid is not None else ()
            saved = tuple(dict.fromkeys(tuple(saves) + tuple(extra) + own))
            for s in saved:
                self.save(s)
            g = tuple(b if self.requires(i) else 0 for i, b in zip(inputs, grads))
            self.nodes.append(Node(oid, tuple(inputs), g, saved, bwd_peak))
        for e in extra:
            self.drop(e)  # held by the node (if any) from here on
        return oid

    # -- backward -------------------------------------------------------------------------------
    def _grad(self, numel: int, role: str) -> int:
        """A new gradient tensor of the chip role "errors" or "weight_grads"."""
        gid = self.new(numel)
        self._set_role(gid, role)
        return gid

    def _set_role(self, tid: int, role: str) -> None:
        t = self.tensors[tid]
        if self.chip is not None and t.role:
            self.chip.live[t.role] -= self.chip.grad_bits_of(t, t.role)
        t.role = role
        if self.chip is not None:
            self.chip.add(role, self.chip.grad_bits_of(t, role))

    def _is_param(self, tid: int) -> bool:
        t = self.tensors.get(tid)
        return t is not None and t.kind == "param"

    def _accumulate(self, target: int, gid: int) -> None:
        t = self.tensors.get(target)
        if t is not None and t.kind == "param":
            if target in self.param_grad:  # .grad exists: in-place add
                self.drop(gid)
            else:  # AccumulateGrad steals a fresh gradient
                self.param_grad[target] = gid
                if self.tensors[gid].role != "weight_grads":
                    self._set_role(gid, "weight_grads")
            return
        if target not in self.grad:
            self.grad[target] = gid
            return
        buf = self.grad[target]
        if self.tensors[buf].refs == 1:  # in-place accumulation into the buffer
            self.drop(gid)
        else:
            summed = self._grad(self.tensors[buf].numel, "errors")
            self.drop(buf)
            self.drop(gid)
            self.grad[target] = summed

    def backward(self, loss: int, nodes: list[Node] | None = None, grad_out: int | None = None) -> None:
        """Backward from `loss` through `nodes` (default: the tape's graph, then cleared).  The
        seed gradient is a new scalar unless grad_out (a tensor id) is given."""
        graph = self.nodes if nodes is None else nodes
        # torch.autograd.backward keeps the seed it makes (ones_like(loss)) until it returns
        seed = self._grad(1, "errors") if grad_out is None else None
        self.grad[loss] = self.hold(seed) if grad_out is None else self.hold(grad_out)
        for node in reversed(graph):
            gout = self.grad.pop(node.out, None) if node.out is not None else None
            if gout is not None and node.fn is not None:
                node.fn(gout)
                self.drop(gout)
            elif gout is not None:
                unpack = sum(self.tensors[s].numel * 4 for s in node.saved if self.pack is not None
                             and self.tensors[s].kind == "tmp" and self.tensors[s].itemsize == 4)
                self.spike(node.bwd_peak + unpack)
                out = [(inp, self.hold(gout) if b == PASS else
                        self._grad(b // 4, "weight_grads" if self._is_param(inp) else "errors"))
                       for inp, b in zip(node.inputs, node.grads) if b]
                for inp, gid in out:  # the node returns all its gradients, then the engine adds
                    self._accumulate(inp, gid)
                self.drop(gout)
            for s in node.saved:
                self.unsave(s)
        graph.clear()
        self.drop(seed)

    def zero_grad(self, params: list[int]) -> None:
        """optimizer.zero_grad(set_to_none=True)."""
        for p in params:
            self.drop(self.param_grad.pop(p, None))

    def ensure_grads(self, params: list[int]) -> None:
        """Steady state: every parameter holds a .grad from the previous step."""
        for p in params:
            if p not in self.param_grad:
                self.param_grad[p] = self._grad(self.tensors[p].numel, "weight_grads")

    def graph(self) -> list[Node]:
        """Start recording into a fresh node list (nested graphs: checkpoint recomputation);
        returns the previous list, to be restored with `self.nodes = previous`."""
        previous, self.nodes = self.nodes, []
        return previous
