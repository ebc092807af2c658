"""DeeperForward (objective.method = "deeperforward"): per-class channel groups, mean-activation
scores, layer-local cross-entropy (Sun et al., ICLR 2025; see onchip_ff/objectives/deeperforward.py):
its [objective] keys, its learner and its registration.

Schedule per batch: the input is layer-normalized per sample; then for each layer, forward on the
detached input -> class scores -> cross-entropy -> backward -> the layer's own optimizer step, and
the detached, normalized output feeds the next layer.  Only one layer's autograd graph is alive at
any time.  Inference: argmax over classes of the scores summed over `objective.eval_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from common.coerce import check, choice
from common.errors import ConfigError
from onchip_ff.network import (build_layers, checked_eval_layers, init_parameters, join_shortcut, make_optimizer,
                               shortcut_plan)
from onchip_ff.objectives.deeperforward import class_cross_entropy, class_scores, feature_norm
from onchip_ff.methods.layer_local import LayerLocalLearner
from onchip_ff.methods.registry import Method, register

if TYPE_CHECKING:
    from onchip_ff.config import Config


@dataclass(frozen=True)
class DeeperForwardObjective:
    """[objective] keys of DeeperForward."""

    method: ClassVar[str] = "deeperforward"
    feature_norm: str = "layer"  # input of the next layer normalized per sample: "layer" or "group" (per class)
    score_scale: float = 1.0  # cross-entropy logits = score_scale * class scores (1 = as published)
    eval_layers: tuple[int, ...] = ()  # layers whose class scores are summed at inference; () = all
    eval_range: str = "fixed"  # "fixed" (eval_layers) or "validation": before each accuracy measurement, the contiguous layer range whose summed scores classify the validation split best (as the published code)

    def __post_init__(self) -> None:
        choice("objective.feature_norm", self.feature_norm, ("layer", "group"))
        choice("objective.eval_range", self.eval_range, ("fixed", "validation"))
        check(self.score_scale > 0, "objective.score_scale", "> 0", self.score_scale)
        check(all(i >= 0 for i in self.eval_layers), "objective.eval_layers",
              "a list of layer indices >= 0", list(self.eval_layers))


def check_group_widths(cfg: Config, n_classes: int) -> None:
    """Every layer width must split into n_classes equal groups."""
    m = cfg.model
    name, widths = ("model.hidden", m.hidden) if m.arch == "mlp" else ("model.channels", m.channels)
    if any(w % n_classes for w in widths):
        fixed = [max(1, round(w / n_classes)) * n_classes for w in widths]
        raise ConfigError(f"{name} = {list(widths)}: objective.method = 'deeperforward' splits every "
                          f"layer into one group per class, so each entry must be a multiple of "
                          f"{n_classes} (the number of classes), e.g. {fixed}")


class DeeperForward(LayerLocalLearner):
    """The DeeperForward learner.  With model.shortcuts = "deeperforward" the normalized output of a
    layer is joined with the kept shortcut tensor (onchip_ff.network.deeperforward_shortcuts) before
    it feeds the next layer, in training and inference alike; the shortcut is kept per pass
    (prepare_input starts a pass), so passes run one at a time.  With objective.eval_range =
    "validation" the trainer calls choose_eval_layers on the validation split before every
    accuracy measurement; the chosen range is then a buffer (eval_mask), so checkpoints and saved
    models keep it (with "fixed" it is a plain attribute and the state holds the weights only)."""

    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        check_group_widths(cfg, n_classes)
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator, cfg.model.init)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.groups = n_classes if self.obj.feature_norm == "group" else 1
        n = len(layers)
        self.plan = shortcut_plan(cfg.model, n)
        self._kept: torch.Tensor | None = None
        mask = torch.zeros(n, dtype=torch.bool)
        mask[checked_eval_layers(self.obj.eval_layers, n, "layers")] = True
        self.needs_validation = self.obj.eval_range == "validation"
        if self.needs_validation:  # the chosen range travels with the weights
            self.register_buffer("eval_mask", mask)
        else:  # fixed by the config: no state (state_dict as before eval_range existed)
            self.eval_mask = mask
        self._eval_list: list[int] | None = None  # eval_mask as indices (read once: no device sync per layer)
        self.optimizers = [make_optimizer(layer.parameters(), cfg.train) for layer in self.layers]

    @property
    def eval_layers(self) -> list[int]:
        """Indices of the layers whose class scores are summed at inference."""
        if self._eval_list is None:
            self._eval_list = [int(i) for i in torch.nonzero(self.eval_mask.cpu()).flatten()]
        return self._eval_list

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._eval_list = None  # a loaded eval_mask

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        try:
            return super().train_step(x, y)
        finally:
            self._kept = None  # the pass is over: do not hold its last shortcut tensor

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return super().scores(x)
        finally:
            self._kept = None

    def layer_forward(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(activations h, class scores (N, n_classes)) of layer k; gradients flow into layer k."""
        h = self.layers[k](x)
        return h, class_scores(h, self.n_classes)

    def to_next_layer(self, h: torch.Tensor, k: int) -> torch.Tensor:
        x = feature_norm(h.detach(), self.groups)
        x, self._kept = join_shortcut(self.plan[k], x, self._kept)
        return x

    def layer_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return class_cross_entropy(scores, y, self.obj.score_scale)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input of layer 0: the sample normalized per sample (layer normalization); starts a pass
        (no shortcut kept yet)."""
        self._kept = None
        return feature_norm(x)

    @torch.no_grad()
    def choose_eval_layers(self, x: np.ndarray, y: np.ndarray, batch_size: int, device: str = "cpu") -> float:
        """Set the evaluated layers to the contiguous range [i, j] whose summed class scores are
        right most often on (x, y), the first best in the published code's search order (j, then i,
        ascending; a later range must be strictly better); returns that accuracy.  Runs in eval
        mode (no drop-out draws) and restores the mode it found."""
        n = len(self.layers)
        was_training = self.training
        self.eval()
        counts = torch.zeros((n, n), dtype=torch.int64, device=device)  # [i, j]: range i..j
        try:
            for b in range(0, len(y), batch_size):
                xb = self.prepare_input(torch.from_numpy(x[b:b + batch_size]).to(device))
                yb = torch.from_numpy(y[b:b + batch_size]).to(device)
                partial = [None] * n  # partial[i] = scores summed over layers i..j so far
                for j in range(n):
                    h, s = self.layer_forward(j, xb)
                    for i in range(j + 1):
                        partial[i] = s if partial[i] is None else partial[i] + s
                        counts[i, j] += (partial[i].argmax(1) == yb).sum()
                    xb = self.to_next_layer(h, j)
        finally:
            self._kept = None
            self.train(was_training)
        correct = counts.cpu().numpy()
        best, first, last = -1, 0, 0
        for j in range(n):
            for i in range(j + 1):
                if correct[i, j] > best:
                    best, first, last = correct[i, j], i, j
        self.set_eval_range(first, last)
        return best / max(len(y), 1)

    def set_eval_range(self, first: int, last: int) -> None:
        """Evaluate the layers first..last (inclusive)."""
        self.eval_mask.zero_()
        self.eval_mask[first:last + 1] = True
        self._eval_list = list(range(first, last + 1))


register(Method("deeperforward", DeeperForwardObjective, DeeperForward, pipeline=True, shortcuts=True))
