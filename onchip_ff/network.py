"""Layer stacks (MLP, CNN, small ResNet) shared by every learning rule, seeded initialization,
DF-O blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from onchip_ff.config import ModelConfig
from common.errors import ConfigError


class DenseLayer(nn.Module):
    """h = relu(W x + b) on the flattened input."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(x.flatten(1)))


class ConvLayer(nn.Module):
    """h = maxpool(relu(conv(x))) with 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        return F.max_pool2d(h, self.pool) if self.pool > 1 else h


class ResidualBlock(nn.Module):
    """h = maxpool(relu(conv2(relu(conv1(x))) + shortcut(x))): two k x k 'same' convolutions with
    bias; shortcut = identity when in_channels == out_channels, else a bias-free 1x1 convolution
    (conv2's bias already adds a per-channel constant); 2x2 max-pool (window `pool`) when pool > 1.
    No batch normalization: every operation is a matrix product the simulator maps onto tiles
    (convolutions, shortcut) or elementwise/pooling periphery, with no batch statistics."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))
        return F.max_pool2d(h, self.pool) if self.pool > 1 else h


def build_layers(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[list[nn.Module], list[tuple[int, ...]]]:
    """Layers of the configured architecture and the output shape (without batch) of each; for
    arch "resnet" each entry is a ResidualBlock (the unit every layer-local rule trains)."""
    layers: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    if cfg.arch == "mlp":
        width = math.prod(input_shape)
        for out in cfg.hidden:
            layers.append(DenseLayer(width, out))
            shapes.append((out,))
            width = out
    else:
        if len(input_shape) != 3:
            raise ConfigError(f"model.arch = {cfg.arch!r} needs images (C, H, W); the data's samples have "
                              f"shape {tuple(input_shape)}: use model.arch = 'mlp' for vectors")
        c, h, w = input_shape
        unit, what = (ResidualBlock, "residual blocks") if cfg.arch == "resnet" else (ConvLayer, "conv layers")
        for i, out in enumerate(cfg.channels):
            pool = cfg.pool if (i + 1) % cfg.pool_every == 0 else 1
            layers.append(unit(c, out, cfg.kernel_size, pool))
            c, h, w = out, h // pool, w // pool
            if h < 1 or w < 1:
                raise ConfigError(f"model.channels: {len(cfg.channels)} {what} with pool "
                                  f"{cfg.pool} every {cfg.pool_every} layer(s) shrink a "
                                  f"{input_shape[1]}x{input_shape[2]} input to nothing; use fewer "
                                  "layers, a larger model.pool_every or model.pool = 1")
            shapes.append((c, h, w))
    return layers, shapes


@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)


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
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    momentum = train_cfg.momentum if train_cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=train_cfg.lr, momentum=momentum,
                           weight_decay=train_cfg.weight_decay)
