"""Locality of the layer-by-layer schedule: no gradient crosses a block boundary, earlier blocks
are untouched by later updates, and only one block's autograd graph is alive at a time."""

import weakref

import pytest
import torch

from onchip_ff.data import load_dataset
from onchip_ff.network import next_input
from onchip_ff.objectives.distance_forward import npair_margin_loss
from onchip_ff.methods import build_learner

from conftest import tiny_config
from learner_checks import assert_step_grads_are_local, keep_grads


def _learner(method, arch="mlp", extra=()):
    cfg = tiny_config(method, arch, extra=list(extra))
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    return learner, x, y


def _snapshot(module):
    return {n: (p.detach().clone(), None if p.grad is None else p.grad.clone())
            for n, p in module.named_parameters()}


def _same(a, b):
    return all(torch.equal(a[n][0], b[n][0]) and
               ((a[n][1] is None and b[n][1] is None) or torch.equal(a[n][1], b[n][1])) for n in a)


@pytest.mark.parametrize("extra", [[], ["objective.block_size=2"], ["objective.accumulate_goodness=true"]])
def test_df_later_block_leaves_earlier_blocks_untouched(extra):
    learner, x, y = _learner("df", extra=extra)
    keep_grads(learner)
    x1, g, _ = learner.train_block(0, x, y, None)
    first = [learner.layers[i] for i in learner.blocks[0]] + [learner.heads[0]]
    before = [_snapshot(m) for m in first]
    learner.train_block(1, x1, y, g)
    assert all(_same(b, _snapshot(m)) for b, m in zip(before, first))
    assert any(p.grad is not None for p in learner.layers[learner.blocks[1][0]].parameters())


@pytest.mark.parametrize("block_size", [1, 2])
def test_df_gradients_equal_the_local_block_loss_alone(block_size):
    """Grads recorded during a full train_step equal those of each block's own loss, computed
    separately; with block_size 2 the first layer of a block does receive gradient."""
    learner, x, y = _learner("df", extra=[f"objective.block_size={block_size}"])

    def local_losses(ref):
        inp = x
        for k, block in enumerate(ref.blocks):
            h_hat = ref.block_forward(k, inp)
            params = {f"layers.{i}.{n}": p for i in block for n, p in ref.layers[i].named_parameters()}
            params.update({f"heads.{k}.{n}": p for n, p in ref.heads[k].named_parameters()})
            yield npair_margin_loss(ref.heads[k].goodness(h_hat), y, ref.obj.scale, ref.obj.margin), params
            inp = next_input(h_hat.detach(), ref.shapes[block[-1]], ref.obj.next_input_scale)

    assert_step_grads_are_local(learner, x, y, local_losses)


class _Saved:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def _alive_graph_counts(learner, x, y, first_layers):
    """Number of live saved-for-backward tensors at the start of each layer's forward."""
    alive = weakref.WeakSet()
    counts = []

    def pack(t):
        holder = _Saved(t)
        alive.add(holder)
        return holder

    hooks = [learner.layers[i].register_forward_pre_hook(lambda m, a: counts.append(len(alive)))
             for i in first_layers]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.tensor):
        learner.train_step(x, y)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize("method, arch, extra", [
    ("df", "mlp", []), ("df", "cnn", []), ("df", "mlp", ["objective.accumulate_goodness=true"]),
    ("ff", "mlp", []), ("ff", "cnn", [])])
def test_schedule_keeps_one_layer_graph_alive(method, arch, extra):
    learner, x, y = _learner(method, arch, extra)
    n = len(learner.layers)
    counts = _alive_graph_counts(learner, x, y, range(n))
    assert counts == [0] * n


def test_dfo_keeps_one_block_graph_alive():
    learner, x, y = _learner("df", extra=["objective.block_size=2"])  # blocks [0, 1], [2]
    counts = _alive_graph_counts(learner, x, y, range(3))
    assert counts[0] == 0 and counts[2] == 0
    assert counts[1] > 0  # inside a block the graph of layer 0 is alive, as it must be


def test_bp_graph_spans_all_layers():
    """The same probe sees backprop's whole-network graph: the check above can fail."""
    learner, x, y = _learner("bp")
    counts = _alive_graph_counts(learner, x, y, range(3))
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > counts[1]
