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

import torch
from torch import nn

from common.coerce import check, choice
from common.errors import ConfigError
from onchip_ff.network import build_layers, checked_eval_layers, init_parameters, make_optimizer
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

    def __post_init__(self) -> None:
        choice("objective.feature_norm", self.feature_norm, ("layer", "group"))
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
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        check_group_widths(cfg, n_classes)
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.groups = n_classes if self.obj.feature_norm == "group" else 1
        self.eval_layers = checked_eval_layers(self.obj.eval_layers, len(layers), "layers")
        self.optimizers = [make_optimizer(layer.parameters(), cfg.train) for layer in self.layers]

    def layer_forward(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(activations h, class scores (N, n_classes)) of layer k; gradients flow into layer k."""
        h = self.layers[k](x)
        return h, class_scores(h, self.n_classes)

    def to_next_layer(self, h: torch.Tensor) -> torch.Tensor:
        return feature_norm(h.detach(), self.groups)

    def layer_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return class_cross_entropy(scores, y, self.obj.score_scale)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input of layer 0: the sample normalized per sample (layer normalization)."""
        return feature_norm(x)


register(Method("deeperforward", DeeperForwardObjective, DeeperForward, pipeline=True))
