"""Layer stacks (MLP, CNN, small ResNet) shared by every learning rule, seeded initialization,
DF-O blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from onchip_ff.config import ModelConfig
from common.errors import ConfigError


class SeededDropout(nn.Module):
    """Inverted drop-out (keep with probability 1 - p, kept values times 1 / (1 - p)) while training,
    identity in eval mode, drawn from its own seed instead of torch's global generator: call c of
    forward in training draws its mask from a generator on the input's device seeded with
    SeedSequence([seed, c]); (seed, c) are mirrored in the int64 buffer `counter`, so checkpoints
    carry them and a resumed run draws what the uninterrupted one would.  The CPU and CUDA
    generators differ, so the masks differ between devices.  The seed is set by init_parameters."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p, self.seed, self.calls = p, 0, 0
        self.register_buffer("counter", torch.zeros(2, dtype=torch.int64))  # [seed, calls]

    def set_seed(self, seed: int) -> None:
        self.seed, self.calls = int(seed), 0
        self.counter.copy_(torch.tensor([self.seed, 0]))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return h
        g = torch.Generator(device=h.device)
        g.manual_seed(int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1, np.uint64)[0] >> 1))
        self.calls += 1
        self.counter[1] = self.calls  # no host sync: the Python ints drive the draws
        keep = torch.rand(h.shape, generator=g, device=h.device, dtype=h.dtype) >= self.p
        return h * keep / (1.0 - self.p)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.seed, self.calls = (int(v) for v in self.counter.tolist())


class DenseLayer(nn.Module):
    """h = dropout(relu(W x + b)) on the flattened input (drop-out only while training, p = 0: none)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.drop = SeededDropout(dropout) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.linear(x.flatten(1)))
        return self.drop(h) if self.drop is not None else h


class ConvLayer(nn.Module):
    """h = pool(dropout(relu(conv(x)))) with padding k // 2 ('same' at stride 1); pool = max or
    average over pool x pool windows (1 = none); with pool_input the window pools x before the
    convolution instead (DeeperForward's TinyCNN), so the layer's output is unpooled.  Drop-out (only
    while training, p = 0: none) acts after the ReLU, as in DeeperForward's CWConv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int, *,
                 stride: int = 1, bias: bool = True, dropout: float = 0.0, pool_kind: str = "max",
                 pool_input: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, bias=bias)
        self.pool, self.pool_input = pool, pool_input
        self.drop = SeededDropout(dropout) if dropout else None
        self.pool_fn = F.avg_pool2d if pool_kind == "avg" else F.max_pool2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1 and self.pool_input:
            x = self.pool_fn(x, self.pool)
        h = F.relu(self.conv(x))
        if self.drop is not None:
            h = self.drop(h)
        return self.pool_fn(h, self.pool) if self.pool > 1 and not self.pool_input else h


class ResidualBlock(nn.Module):
    """h = maxpool(relu(conv2(relu(conv1(x))) + shortcut(x))): two k x k 'same' convolutions with
    bias (unless bias=False); shortcut = identity when in_channels == out_channels, else a bias-free
    1x1 convolution (conv2's bias already adds a per-channel constant); 2x2 max-pool (window `pool`)
    when pool > 1.
    No batch normalization: every operation is a matrix product the simulator maps onto tiles
    (convolutions, shortcut) or elementwise/pooling periphery, with no batch statistics."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int, bias: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))
        return F.max_pool2d(h, self.pool) if self.pool > 1 else h


def build_layers(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[list[nn.Module], list[tuple[int, ...]]]:
    """Layers of the configured architecture and the output shape (without batch) of each; for
    arch "resnet" each entry is a ResidualBlock (the unit every layer-local rule trains).  With
    model.shortcuts = "deeperforward" a layer's input may carry the channels that a concatenating
    shortcut appended to the previous layer's output (see deeperforward_shortcuts); the shapes are
    still those of each layer's own output."""
    layers: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    if cfg.arch == "mlp":
        width = math.prod(input_shape)
        for out in cfg.hidden:
            layers.append(DenseLayer(width, out, bias=cfg.bias, dropout=cfg.dropout))
            shapes.append((out,))
            width = out
        return layers, shapes
    if len(input_shape) != 3:
        raise ConfigError(f"model.arch = {cfg.arch!r} needs images (C, H, W); the data's samples have "
                          f"shape {tuple(input_shape)}: use model.arch = 'mlp' for vectors")
    c, h, w = input_shape
    n = len(cfg.channels)
    pooled = set(cfg.pool_layers) if cfg.pool_layers else {i for i in range(n) if (i + 1) % cfg.pool_every == 0}
    plan = shortcut_plan(cfg, n)
    saved: tuple[int, int, int] | None = None  # (channels, h, w) of the kept shortcut
    what = "residual blocks" if cfg.arch == "resnet" else "conv layers"
    for i, out in enumerate(cfg.channels):
        pool = cfg.pool if i in pooled else 1
        if cfg.arch == "resnet":
            layers.append(ResidualBlock(c, out, cfg.kernel_size, pool, bias=cfg.bias))
            c, h, w = out, h // pool, w // pool
        else:
            k = cfg.kernel_sizes[i] if cfg.kernel_sizes else cfg.kernel_size
            stride = cfg.strides[i] if cfg.strides else 1
            layers.append(ConvLayer(c, out, k, pool, stride=stride, bias=cfg.bias, dropout=cfg.dropout,
                                    pool_kind=cfg.pool_kind, pool_input=cfg.pool_input))
            if cfg.pool_input:
                h, w = h // pool, w // pool
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1  # padding k // 2, odd k
            if not cfg.pool_input:
                h, w = h // pool, w // pool
            c = out
        if h < 1 or w < 1:
            raise ConfigError(f"model.channels: {n} {what} with their pooling and strides shrink a "
                              f"{input_shape[1]}x{input_shape[2]} input to nothing at layer {i}; use fewer "
                              "layers, less pooling (model.pool_every, model.pool_layers, model.pool = 1) "
                              "or smaller model.strides")
        shapes.append((c, h, w))
        c = _check_shortcut(i, plan[i], saved, (c, h, w))
        if plan[i].keep:
            saved = (c, h, w)
    return layers, shapes


@dataclass(frozen=True)
class Shortcut:
    """What happens after layer i's normalized output: join = "add" (+ the kept tensor), "concat"
    (kept tensor appended as channels) or "" (nothing); keep = the result becomes the kept tensor
    (detached).  A kept tensor larger than the joining layer's output is average-pooled down to it."""

    join: str = ""
    keep: bool = False


def deeperforward_shortcuts(n_layers: int) -> list[Shortcut]:
    """The shortcut plan of DeeperForward's ResNet (Sun et al., ICLR 2025; model/resnet.py of the
    code published with the paper, read not copied): layer 0's output is kept; then in every stage
    of four layers (1-4, 5-8, ...) the second adds the kept tensor and becomes the kept tensor, the
    fourth concatenates it and becomes the kept tensor (average-pooled 2x2 where the next stage
    starts with a stride-2 conv); the last layer keeps nothing.  Written for any depth; the paper's
    17-layer network has four stages."""
    plan = [Shortcut(keep=True)]
    for i in range(1, n_layers):
        pos = (i - 1) % 4
        plan.append(Shortcut("add", True) if pos == 1 else Shortcut("concat", True) if pos == 3 else Shortcut())
    plan[-1] = Shortcut(plan[-1].join, False)
    return plan


def shortcut_plan(cfg: ModelConfig, n_layers: int) -> list[Shortcut]:
    """The Shortcut after each of n_layers layers: model.shortcuts = "deeperforward" gives
    deeperforward_shortcuts, "none" no joins at all."""
    return deeperforward_shortcuts(n_layers) if cfg.shortcuts == "deeperforward" else [Shortcut()] * n_layers


def _check_shortcut(i: int, s: Shortcut, saved, out: tuple[int, int, int]) -> int:
    """Channels handed to layer i + 1 after shortcut s joins layer i's output `out` (C, H, W), or
    ConfigError when the kept tensor `saved` cannot join it."""
    c, h, w = out
    if not s.join:
        return c
    sc, sh, sw = saved
    if sh % h or sw % w or sh // h != sw // w:
        raise ConfigError(f"model.shortcuts = 'deeperforward': layer {i}'s output is {h}x{w} but the "
                          f"kept shortcut is {sh}x{sw}, not a whole multiple; check model.strides / pooling")
    if s.join == "add" and sc != c:
        raise ConfigError(f"model.shortcuts = 'deeperforward': layer {i} adds a kept shortcut of {sc} channels "
                          f"to its {c} output channels; set model.channels[{i}] = {sc}")
    return c + sc if s.join == "concat" else c


def join_shortcut(s: Shortcut, x: torch.Tensor, saved: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply shortcut s to the normalized output x of a layer: (input of the next layer, new kept
    tensor).  The kept tensor is average-pooled to x's size before it joins."""
    if s.join:
        factor = saved.shape[-1] // x.shape[-1]
        if factor > 1:
            saved = F.avg_pool2d(saved, factor)
        x = x + saved if s.join == "add" else torch.cat([x, saved], dim=1)
    return x, (x.detach() if s.keep else saved)


@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator, init: str = "uniform") -> None:
    """Seeded initialization of every Linear/Conv2d: "uniform" = PyTorch's default,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; "kaiming_normal_fan_out" =
    N(0, 2 / fan_out) weights (fan_out = out channels x kernel area; torch's
    kaiming_normal_(mode='fan_out', nonlinearity='relu'), as DeeperForward's code) and zero biases.
    Then every SeededDropout draws its seed from the generator (none drawn when there is none)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if init == "kaiming_normal_fan_out":
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
                continue
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)
    for m in module.modules():
        if isinstance(m, SeededDropout):
            m.set_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def normalize(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Length-normalize each sample's flattened features: (N, ...) -> (N, D) with |row| = 1."""
    flat = h.flatten(1)
    return flat / (flat.norm(dim=1, keepdim=True) + eps)


def next_input(h_hat: torch.Tensor, shape: tuple[int, ...], mode: str) -> torch.Tensor:
    """Input of the next layer: h_hat times sqrt(D) (mean square 1) or times 1, in layer shape."""
    scale = math.sqrt(h_hat.shape[1]) if mode == "sqrt_d" else 1.0
    return (h_hat * scale).view(h_hat.shape[0], *shape)


def checked_eval_layers(requested: tuple[int, ...], n: int, unit: str) -> list[int]:
    """objective.eval_layers as a list ([] = all n), or ConfigError for an index past the end."""
    if any(i >= n for i in requested):
        raise ConfigError(f"objective.eval_layers {list(requested)}: there are only {n} {unit} "
                          f"(indices 0..{n - 1}); list {unit[:-1]} indices, or [] for all")
    return list(requested) or list(range(n))


def make_blocks(n_layers: int, block_size: int) -> list[list[int]]:
    """Consecutive groups of block_size layer indices (the last may be shorter)."""
    return [list(range(i, min(i + block_size, n_layers))) for i in range(0, n_layers, block_size)]


def make_optimizer(params, train_cfg) -> torch.optim.Optimizer:
    """Optimizer over params: a list of tensors or of param-group dicts (with their own "lr")."""
    params = list(params)
    if train_cfg.optimizer in ("adam", "adamw"):
        opt = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
        return opt(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    momentum = train_cfg.momentum if train_cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=train_cfg.lr, momentum=momentum,
                           weight_decay=train_cfg.weight_decay)
