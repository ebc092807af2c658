"""Integrated Forward-Forward learner (float reference): FF between blocks, backprop inside a block
(Tang 2023; see onchip_ff/objectives/intff.py).

The hidden layers of the MLP are grouped into blocks by `objective.intff_blocks` (layers per
block; () = one layer per block, which is plain FF with shuffled-label negatives).  Schedule per
batch: positives carry the true label, negatives a shuffled one (objective.negatives = "hard":
the hardest wrong label); for each block, forward through its layers (plain ReLU layers, no
normalization inside) -> goodness of its last layer -> softplus loss -> backward through the
block only -> the block's own optimizer step; the detached, length-normalized output (times
sqrt(D) or 1, objective.next_input_scale) feeds the next block.  Only one block's autograd graph
is alive at a time.  Inference tries every label and sums the goodness of the blocks in
objective.eval_layers (block indices; () = all).
"""

from __future__ import annotations

import torch

from onchip_ff.config import Config
from common.errors import ConfigError
from onchip_ff.objectives.intff import shuffled_wrong_labels
from onchip_ff.reference.forward_forward import ForwardForward


def group_blocks(sizes: tuple[int, ...], n_layers: int) -> list[list[int]]:
    """Layer indices of each block from objective.intff_blocks (layers per block; () = 1 each)."""
    sizes = tuple(sizes) or (1,) * n_layers
    if sum(sizes) != n_layers:
        raise ConfigError(f"objective.intff_blocks = {list(sizes)} groups {sum(sizes)} layers, but "
                          f"model.hidden has {n_layers}; the entries must sum to {n_layers} "
                          f"(e.g. {[1] * n_layers}, or [] for one layer per block)")
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [list(range(s, s + n)) for s, n in zip(starts, sizes)]


class IntegratedForwardForward(ForwardForward):
    """FF's block schedule with blocks of objective.intff_blocks layers and shuffled-label
    negatives; MLPs only."""
    method = "intff"
    unit = "blocks"

    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        if cfg.model.arch != "mlp":
            raise ConfigError(f"objective.method = 'intff' is implemented for model.arch = 'mlp' only, "
                              f"got {cfg.model.arch!r}")
        super().__init__(cfg, input_shape, n_classes, generator)

    def group_layers(self, n_layers: int) -> list[list[int]]:
        return group_blocks(self.obj.intff_blocks, n_layers)

    def wrong_labels(self, y: torch.Tensor) -> torch.Tensor:
        return shuffled_wrong_labels(y, self.n_classes, self.generator)
