"""Hinton Forward-Forward learner (float reference), trained with the same layer-local schedule.

Positive data carries the true label in its first n_classes inputs, negative data a wrong one
(random or hardest).  Each layer: goodness = mean square of its activities, softplus loss around
threshold theta, own optimizer; the next layer gets the detached, length-normalized activities.
Inference tries every label and picks the one with the largest summed goodness.
"""

from __future__ import annotations

import torch
from torch import nn

from onchip_ff.config import Config
from onchip_ff.negatives import hardest_wrong_labels, random_wrong_labels
from onchip_ff.network import build_layers, checked_eval_layers, init_parameters, make_optimizer, next_input, normalize
from onchip_ff.objectives.forward_forward import check_label_fits, embed_label, ff_goodness, ff_loss


class ForwardForward(nn.Module):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        check_label_fits("ff", input_shape, n_classes)
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.generator = generator
        self.eval_layers = checked_eval_layers(self.obj.eval_layers, len(layers), "layers")
        self.optimizers = [make_optimizer(layer.parameters(), cfg.train) for layer in self.layers]

    def embed(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embed_label(x, labels, self.n_classes, self.obj.label_scale)

    def negatives(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.obj.negatives == "hard":
            return hardest_wrong_labels(self.scores(x), y)
        return random_wrong_labels(y, self.n_classes, self.generator)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        n = len(y)
        h = torch.cat([self.embed(x, y), self.embed(x, self.negatives(x, y))])
        losses = []
        for i, layer in enumerate(self.layers):
            out = layer(h.detach())
            g = ff_goodness(out)
            loss = ff_loss(g[:n], g[n:], self.obj.threshold)
            opt = self.optimizers[i]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            h = next_input(normalize(out.detach()), self.shapes[i], self.obj.next_input_scale)
        return {"loss": sum(losses) / len(losses), **{f"loss_{i}": v for i, v in enumerate(losses)}}

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C): summed goodness over the eval layers with label k written into the input."""
        cols = []
        for k in range(self.n_classes):
            h = self.embed(x, torch.full((len(x),), k, dtype=torch.long, device=x.device))
            total = torch.zeros(len(x), device=x.device)
            for i, layer in enumerate(self.layers):
                out = layer(h)
                if i in self.eval_layers:
                    total += ff_goodness(out)
                h = next_input(normalize(out), self.shapes[i], self.obj.next_input_scale)
            cols.append(total)
        return torch.stack(cols, dim=1)
