"""Bridge between the float reference and the simulator (`hardware.backend = "sim"`): Linear and
Conv2d layers whose matrix products run on simulated tiles, and the write of every optimizer step
into the devices.

The layer's weight Parameter keeps its identity (optimizers built before the swap stay valid) and
always holds the device's weights: after each optimizer step the requested change is written
through the device's update model and the Parameter is overwritten with what the devices hold, so
the next forward sees the device, not a hidden float copy.  Bias and the weight gradient
(d^T x outer products) are digital periphery in float32; the input gradient is a transposed MVM
through the same tiles.  Exception: an array whose pulsed devices take aihwkit's stochastic pulse
trains (pulsed_constant with update_scheme = "pulse_train"), stepped by plain SGD (no momentum, no
weight decay): its step is the rank-N pulse-train update from the layer's last (x, d) —
tile.outer_update(x, d, lr), aihwkit's AnalogSGD — not a write of the requested weights, and its
backward forms no weight gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hw_models.device import DeviceConfig
from hw_models.tiles import make_tile
from hw_models.tiles.update import takes_pulse_trains


def _to_tile(tile, t: torch.Tensor):
    """A tensor as the tile takes it: itself for the torch engine, a numpy array otherwise."""
    return t.detach() if getattr(tile, "tensors", False) else t.detach().numpy()


def _from_tile(tile, a) -> torch.Tensor:
    return a if getattr(tile, "tensors", False) else torch.from_numpy(a)


def _plain_sgd_lr(optimizer, param) -> float | None:
    """The lr of param's group when it is plain SGD (no momentum, dampening, weight decay,
    Nesterov), else None."""
    if type(optimizer) is not torch.optim.SGD:
        return None
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            if group["momentum"] or group["weight_decay"] or group.get("nesterov"):
                return None
            return float(group["lr"])
    return None


def _keep_pending(module, x: torch.Tensor, dy: torch.Tensor) -> None:
    """A module whose array takes pulse trains keeps every (x, dy) of this step (FF: positive and
    negative passes) for its pulse-train update."""
    if takes_pulse_trains(module.tile.device):
        prev = module.pending
        pair = (x.detach(), dy.detach())
        module.pending = pair if prev is None else tuple(torch.cat(t) for t in zip(prev, pair))


class _TileMatmul(torch.autograd.Function):
    """y = x W^T (+ b) on a tile, one autograd node like addmm: saves x only; backward: dx =
    transposed MVM on the tile, dW = dy^T x and db = sum(dy) (digital); a module whose array takes
    pulse trains also keeps (x, dy) for its step."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias, module) -> torch.Tensor:
        tile = module.tile
        ctx.save_for_backward(x)
        ctx.module = module
        ctx.weight_shape = weight.shape
        y = _from_tile(tile, tile.forward(_to_tile(tile, x)))
        return y + bias if bias is not None else y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        dy = dy.contiguous()
        module, tile = ctx.module, ctx.module.tile
        _keep_pending(module, x, dy)
        dx = _from_tile(tile, tile.backward(_to_tile(tile, dy))) if ctx.needs_input_grad[0] else None
        dw = (dy.T @ x).view(ctx.weight_shape) if ctx.needs_input_grad[1] and not module.pulse_stepped() else None
        db = dy.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None


class _TileConv(torch.autograd.Function):
    """Conv2d (groups 1, dilation 1, zero padding) as im2col + tile MVM, one autograd node like
    the convolution: saves its input x (not the k*k-times larger columns, which backward unfolds
    again); each output pixel is one read of the (out, in*k*k) array.  Backward: dx = col2im of the
    transposed MVMs, dW = dy^T cols, db = sum(dy) (digital)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias, module) -> torch.Tensor:
        tile = module.tile
        n, _, h, w = x.shape
        k, pad, stride = module.kernel_size, module.padding, module.stride
        ho = (h + 2 * pad[0] - k[0]) // stride[0] + 1
        wo = (w + 2 * pad[1] - k[1]) // stride[1] + 1
        ctx.save_for_backward(x)
        ctx.module, ctx.weight_shape, ctx.out_hw = module, weight.shape, (ho, wo)
        flat = _TileConv.columns(x, module)
        y = _from_tile(tile, tile.forward(_to_tile(tile, flat)))  # (N*L, O)
        # contiguous NCHW like nn.Conv2d's output (a channels-last view would make flatten copy it)
        y = y.view(n, ho * wo, -1).transpose(1, 2).reshape(n, -1, ho, wo)
        if bias is None:
            return y.contiguous()
        return torch.add(y, bias.view(1, -1, 1, 1), out=torch.empty(y.shape, dtype=y.dtype, device=y.device))

    @staticmethod
    def columns(x: torch.Tensor, module) -> torch.Tensor:
        """(N*L, C*k*k) rows: one input patch per output pixel."""
        cols = F.unfold(x, module.kernel_size, padding=module.padding, stride=module.stride)  # (N, CKK, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1]).contiguous()

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        module, tile = ctx.module, ctx.module.tile
        n, o = dy.shape[:2]
        d = dy.reshape(n, o, -1).transpose(1, 2).reshape(-1, o).contiguous()  # (N*L, O)
        flat = _TileConv.columns(x, module)
        _keep_pending(module, flat, d)
        dx = None
        if ctx.needs_input_grad[0]:
            dcols = _from_tile(tile, tile.backward(_to_tile(tile, d)))  # (N*L, CKK)
            dcols = dcols.view(n, -1, dcols.shape[1]).transpose(1, 2)
            dx = F.fold(dcols, x.shape[2:], module.kernel_size, padding=module.padding, stride=module.stride)
            dx = dx.clone()  # fold's result views a k*k-times larger storage on the CPU: keep just dx
        dw = (d.T @ flat).view(ctx.weight_shape) if ctx.needs_input_grad[1] and not module.pulse_stepped() else None
        db = dy.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None


class AnalogLinear(nn.Module):
    """nn.Linear on a simulated array: y = x W^T through the tile (+ a digital bias)."""

    pending: tuple[torch.Tensor, torch.Tensor] | None = None  # pulse-train arrays: this step's (x, dy)
    stepper = None  # the optimizer that steps the weight (attach_simulator)

    def pulse_stepped(self) -> bool:
        """True when the array takes pulse trains and its optimizer is plain SGD: its step is the
        pulse-train update of (x, dy), so no weight gradient is formed (SGD would only move a
        Parameter that the step then overwrites with what the devices hold)."""
        return (self.stepper is not None and takes_pulse_trains(self.tile.device)
                and _plain_sgd_lr(self.stepper, self.weight) is not None)

    def __init__(self, linear: nn.Linear, device: DeviceConfig, rng: np.random.Generator) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.tile = make_tile(self.weight.detach().numpy(), device, rng)
        self.sync_from_device()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._write_if_changed()
        return _TileMatmul.apply(x.contiguous(), self.weight, self.bias, self)

    def _write_if_changed(self) -> None:
        """An optimizer without the learners' step hook (a user's own, after onchip_ff.convert)
        changed the Parameter in place: write the change into the devices before they are read."""
        if self.weight._version != self._synced:
            self.write_to_device()

    @torch.no_grad()
    def write_to_device(self, optimizer=None) -> None:
        """After an optimizer step: write the requested weights into the devices and keep what they
        now hold; or, for an array that takes pulse trains stepped by plain SGD, apply the
        pulse-train update of the layer's last (x, d) at the group's lr instead."""
        pending, self.pending = self.pending, None
        lr = _plain_sgd_lr(optimizer, self.weight) if pending is not None and optimizer is not None else None
        if lr is not None:
            x, dy = pending
            self.tile.outer_update(_to_tile(self.tile, x), _to_tile(self.tile, dy), lr)
            self.sync_from_device()
            return
        w = self.weight.reshape(self.weight.shape[0], -1)
        w.copy_(_from_tile(self.tile, self.tile.write(_to_tile(self.tile, w))))
        self._synced = self.weight._version

    @torch.no_grad()
    def program_from_weight(self) -> None:
        """Program the arrays afresh with the Parameter's values (new programming noise), and
        let the Parameter hold what they now hold."""
        self.tile.program(_to_tile(self.tile, self.weight.reshape(self.weight.shape[0], -1)))
        self.sync_from_device()

    @torch.no_grad()
    def sync_from_device(self) -> None:
        """The Parameter := what the devices hold now."""
        self.weight.copy_(_from_tile(self.tile, self.tile.weights()).view_as(self.weight))
        self._synced = self.weight._version

    def _apply(self, fn, *args, **kwargs):
        """module.to(device) etc.: the tile follows the weight to its device — a torch-engine tile
        moves its tensors; with hardware.engine = "auto" an array on the numba engine becomes a
        torch-engine array when the module goes to a CUDA device (hw_models/torch_engine)."""
        out = super()._apply(fn, *args, **kwargs)
        dev = self.weight.device
        if getattr(self.tile, "tensors", False):
            self.tile.to(dev)
        elif dev.type != "cpu":
            self.tile = _torch_engine_tile(self.tile, dev)
        return out

    def set_time(self, t_s: float) -> None:
        """Read the array t_s seconds after programming from now on (drift, frozen read noise); the
        Parameter follows what the devices then hold."""
        if self.tile.t_s == self.tile.device.read_time_s:
            self._write_if_changed()  # a pending optimizer step lands before the clock moves
        self.tile.set_time(t_s)
        self._write_if_changed()  # (set back to read_time_s: a step made at the later time lands now)
        self.sync_from_device()


class AnalogConv2d(AnalogLinear):
    """nn.Conv2d (groups 1, dilation 1, zero padding) as im2col + tile MVM: each output pixel is one
    read of the (out, in*k*k) array."""

    def __init__(self, conv: nn.Conv2d, device: DeviceConfig, rng: np.random.Generator) -> None:
        nn.Module.__init__(self)
        self.weight = conv.weight
        self.bias = conv.bias
        self.kernel_size, self.padding, self.stride = conv.kernel_size, conv.padding, conv.stride
        self.tile = make_tile(self.weight.detach().reshape(self.weight.shape[0], -1).numpy(), device, rng)
        self.sync_from_device()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._write_if_changed()
        return _TileConv.apply(x, self.weight, self.bias, self)


def _torch_engine_tile(tile, dev: torch.device):
    """The numba-engine array `tile` as a torch-engine array on dev (same devices, conductances,
    ranges and time; new random streams seeded from the tile's Generator)."""
    from common.errors import ConfigError
    from hw_models.torch_engine import unsupported as why_not
    from hw_models.torch_engine.digital import TorchDigitalTile
    from hw_models.torch_engine.tile import TorchTile
    device = tile.device
    if device.engine == "numba":
        raise ConfigError(f"hardware.engine = 'numba' runs on the CPU only; a model on {dev} needs "
                          "hardware.engine = 'torch' or 'auto'")
    why = why_not(device)
    if why:
        raise ConfigError(f"a simulated array on {dev} runs on the torch engine, but {why}")
    if device.digital:
        return TorchDigitalTile.from_digital(tile, dev)
    return TorchTile.from_analog(tile, dev)


def unsupported(module: nn.Module) -> list[str]:
    """What in `module` the simulator cannot map: layers with parameters other than Linear and
    Conv2d, and convolutions other than groups 1, dilation 1, zero padding by integers ("name: why")."""
    bad = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
                bad.append(f"{name or type(m).__name__}: Conv2d with groups {m.groups}, dilation {m.dilation}, "
                           f"padding {m.padding!r} ({m.padding_mode}); supported: groups 1, dilation 1, "
                           "integer zero padding")
        elif not isinstance(m, (nn.Linear, AnalogLinear)) and any(True for _ in m.parameters(recurse=False)):
            bad.append(f"{name or type(m).__name__}: {type(m).__name__} has parameters but is not Linear or Conv2d")
    return bad


def swap_layers(module: nn.Module, device: DeviceConfig, seed: int) -> list[AnalogLinear]:
    """Swap every nn.Linear / nn.Conv2d below `module` (in place) for its tile-backed twin (same
    Parameters, programmed now; tile k draws from SeedSequence(seed) child k).  Returns the analog
    modules in the order of module.named_children(), depth first."""
    seeds = np.random.SeedSequence(seed).spawn(1024)
    analog: list[AnalogLinear] = []

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                cls = AnalogLinear if isinstance(child, nn.Linear) else AnalogConv2d
                new = cls(child, device, np.random.default_rng(seeds[len(analog)]))
                setattr(parent, name, new)
                analog.append(new)
            else:
                swap(child)

    swap(module)
    return analog


def attach_simulator(learner: nn.Module, device: DeviceConfig, seed: int) -> list[AnalogLinear]:
    """Swap every nn.Linear / nn.Conv2d of the learner for its tile-backed twin (same Parameters),
    and make every optimizer step write into the devices.  Returns the analog modules.  A module
    without the learners' `optimizers` is refused before anything is swapped (onchip_ff.convert
    is for plain modules)."""
    if not isinstance(getattr(learner, "optimizers", None), list):
        from common.errors import ConfigError
        raise ConfigError(f"attach_simulator needs a learner with its optimizers; a plain "
                          f"{type(learner).__name__} goes through onchip_ff.convert(module, preset)")
    analog = swap_layers(learner, device, seed)
    by_param = {id(m.weight): m for m in analog}
    for opt in learner.optimizers:
        mods = [by_param[id(p)] for g in opt.param_groups for p in g["params"] if id(p) in by_param]
        for m in mods:
            m.stepper = opt
        opt.register_step_post_hook(lambda _opt, _a, _k, mods=mods: [m.write_to_device(_opt) for m in mods])
    return analog
