"""Integrated Forward-Forward (objective.method = "intff"): FF between blocks, backprop inside a
block (Tang 2023; see onchip_ff/objectives/intff.py): its [objective] keys, its learner and its
registration.

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

from dataclasses import dataclass
from typing import ClassVar

import torch

from common.coerce import check
from common.errors import ConfigError
from onchip_ff.methods.ff import FFObjective, ForwardForward
from onchip_ff.methods.registry import Method, register
from onchip_ff.objectives.intff import shuffled_wrong_labels


@dataclass(frozen=True)
class IntFFObjective(FFObjective):
    """[objective] keys of Integrated FF: FF's (eval_layers index blocks; negatives "random" =
    shuffled batch labels) and the grouping of layers into blocks."""

    method: ClassVar[str] = "intff"
    intff_blocks: tuple[int, ...] = ()  # layers per block, summing to the number of model.hidden layers; () = 1 each

    def __post_init__(self) -> None:
        super().__post_init__()
        check(all(b >= 1 for b in self.intff_blocks), "objective.intff_blocks",
              "a list of layer counts >= 1 per block (e.g. [3, 2]; [] = one layer per block)",
              list(self.intff_blocks))


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

    def group_layers(self, n_layers: int) -> list[list[int]]:
        return group_blocks(self.obj.intff_blocks, n_layers)

    def wrong_labels(self, y: torch.Tensor) -> torch.Tensor:
        return shuffled_wrong_labels(y, self.n_classes, self.generator)


register(Method("intff", IntFFObjective, IntegratedForwardForward, archs=("mlp",)))
