"""Layer-pipelined training of DeeperForward (and Scalable FF, block by block) over
torch.distributed: P processes ("stages"), stage r owns a contiguous range of layers, trains them on
each mini-batch and sends their (detached, normalized) output of that batch to stage r + 1, then
goes on with the next batch while r + 1 works on this one.

DeeperForward's updates are layer-local (Sun et al., ICLR 2025, who report a 1.75x speed-up of
their pipeline on 2 GPUs and 2.48x on 4), so the pipelined run computes exactly what the
sequential schedule computes: layer k's update on batch i needs only layer k-1's output on
batch i, which the sequential schedule also takes before layer k-1's own update of that batch
(tested: same parameters after the same steps).  Every stage builds the whole learner from the
same seed (so initial weights match the sequential run), loads the data set itself and walks the
same permutation; only the features cross process boundaries.

Backends: gloo on the CPU; with train.device = "cuda" nccl when there are at least P GPUs (stage r
on cuda:r), else all stages share cuda:0 and the features travel through the CPU over gloo.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from onchip_ff.config import Config
from common.errors import ConfigError


def split_layers(costs: list[float], stages: int) -> list[range]:
    """Contiguous split of the layers into `stages` non-empty ranges minimizing the largest stage
    cost (exhaustive dynamic programme; ties go to the earlier cut)."""
    n = len(costs)
    if not 1 <= stages <= n:
        raise ConfigError(f"--processes {stages}: the network has {n} layers, so 1..{n} stages are possible")
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = {(0, 0): (0.0, [])}  # (layers used, stages used) -> (max cost, cut points)
    for s in range(1, stages + 1):
        for end in range(s, n - (stages - s) + 1):
            options = []
            for start in range(s - 1, end):
                if (start, s - 1) in best:
                    worst, cuts = best[(start, s - 1)]
                    options.append((max(worst, prefix[end] - prefix[start]), cuts + [end]))
            best[(end, s)] = min(options, key=lambda o: o[0])
    cuts = [0] + best[(n, stages)][1]
    return [range(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def measure_layer_costs(cfg: Config, data, threads: int, steps: int = 3) -> list[float]:
    """Seconds per mini-batch of each layer's local update (forward, loss, backward, step and the
    normalization handed on), median over `steps` batches after one warm-up batch, measured in this
    process with `threads` torch threads on train.device.  MAC counts mis-split the pipeline: they
    leave out normalization, pooling and the optimizer, and small late layers run less efficiently."""
    from onchip_ff.methods import build_learner
    device = torch.device("cuda:0" if cfg.train.device == "cuda" else "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        learner = build_learner(cfg, data.input_shape, data.n_classes,
                                torch.Generator().manual_seed(cfg.train.seed)).to(device)
        b = min(cfg.train.batch_size, len(data.y_train))
        times = [[] for _ in learner.layers]
        for step in range(steps + 1):
            idx = slice(step * b % max(1, len(data.y_train) - b), None)
            x = learner.prepare_input(torch.from_numpy(data.x_train[idx][:b]).to(device))
            y = torch.from_numpy(data.y_train[idx][:b]).to(device)
            for k in range(len(learner.layers)):
                t0 = time.perf_counter()
                x, _ = learner.train_layer(k, x, y)  # .item() inside synchronizes a GPU
                if step:
                    times[k].append(time.perf_counter() - t0)
        return [float(np.median(t)) for t in times]
    finally:
        torch.set_num_threads(before)


@dataclass
class StageReport:
    rank: int
    layers: list[int]
    steps: int = 0
    wall_s: float = 0.0  # from the common start (a barrier) to this stage's last step
    compute_s: float = 0.0  # forward + backward + optimizer steps of its layers
    recv_wait_s: float = 0.0  # waiting for the previous stage's features
    send_wait_s: float = 0.0  # waiting for the previous send to complete before the next
    losses: list[float] = field(default_factory=list)


def batch_plan(n: int, batch_size: int, epochs: int, seed: int, max_steps: int) -> list[np.ndarray]:
    """The trainer's mini-batches: one permutation per epoch from default_rng(train.seed)."""
    rng = np.random.default_rng(seed)
    steps = math.ceil(n / batch_size)
    plan = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        plan += [perm[s * batch_size:(s + 1) * batch_size] for s in range(steps)]
    return plan[:max_steps] if max_steps else plan


def _stage(rank: int, world: int, cfg: Config, split: list[list[int]], max_steps: int,
           init_file: str, threads: int, result_dir: str, warmup: int) -> None:
    """Body of one stage process (torch.multiprocessing.spawn target)."""
    import torch.distributed as dist

    from hw_models.blas import set_threads
    from onchip_ff.data import load_dataset
    from onchip_ff.methods import build_learner
    from onchip_ff.trainer import set_learning_rates

    set_threads(threads)
    cuda = cfg.train.device == "cuda"
    backend = "nccl" if cuda and torch.cuda.device_count() >= world > 1 else "gloo"
    device = torch.device(f"cuda:{rank if backend == 'nccl' else 0}") if cuda else torch.device("cpu")
    wire = device if backend == "nccl" else torch.device("cpu")  # where sent tensors live
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data = load_dataset(cfg.data)
        t = cfg.train
        learner = build_learner(cfg, data.input_shape, data.n_classes,
                                torch.Generator().manual_seed(t.seed)).to(device)
        learner.train()
        mine = split[rank]
        plan = batch_plan(len(data.y_train), t.batch_size, t.epochs, t.seed, max_steps)
        total = t.epochs * math.ceil(len(data.y_train) / t.batch_size)
        in_shape = learner.shapes[mine[0] - 1] if rank > 0 else None
        report = StageReport(rank, mine)
        x_dev = torch.from_numpy(data.x_train).to(device) if rank == 0 else None
        y_dev = torch.from_numpy(data.y_train).to(device)
        pending = None
        dist.barrier()
        start = time.perf_counter()
        for step, idx in enumerate(plan):
            if step == warmup and warmup:  # drain the pipeline, then time from here on
                if pending is not None:
                    pending.wait()
                    pending = None
                dist.barrier()
                report = StageReport(rank, mine, losses=report.losses)
                start = time.perf_counter()
            idx_t = torch.from_numpy(idx).to(device)
            y = y_dev[idx_t]
            if rank == 0:
                x = learner.prepare_input(x_dev[idx_t])
            else:
                t0 = time.perf_counter()
                buf = torch.empty((len(idx), *in_shape), dtype=torch.float32, device=wire)
                dist.recv(buf, src=rank - 1)
                x = buf.to(device)
                report.recv_wait_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            set_learning_rates([learner.optimizers[k] for k in mine], t, step, total)
            for k in mine:
                x, loss = learner.train_layer(k, x, y)
                report.losses.append(loss)  # .item() inside: the stage's work of this batch is done
            report.compute_s += time.perf_counter() - t0
            if rank < world - 1:
                t0 = time.perf_counter()
                if pending is not None:
                    pending.wait()
                pending = dist.isend(x.to(wire).contiguous(), dst=rank + 1)
                report.send_wait_s += time.perf_counter() - t0
            report.steps += 1
        if cuda:
            torch.cuda.synchronize(device)
        if pending is not None:
            pending.wait()
        report.wall_s = time.perf_counter() - start
        state = {k: v.cpu() for k, v in learner.state_dict().items()  # its layers' (and heads'); stage 0
                 if (k.split(".")[0] in ("layers", "heads") and int(k.split(".")[1]) in mine)  # also the rest
                 or (k.split(".")[0] not in ("layers", "heads") and rank == 0)}  # (DeeperForward's eval_mask)
        torch.save({"report": report.__dict__, "state": state}, os.path.join(result_dir, f"stage{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def pipeline_methods() -> list[str]:
    """Registered methods whose learners have prepare_input / train_layer (Method.pipeline)."""
    from onchip_ff.methods import REGISTRY, names
    return [n for n in names() if REGISTRY[n].pipeline]


def check_pipeline(cfg: Config) -> None:
    if cfg.objective.method not in pipeline_methods():
        raise ConfigError(f"the layer pipeline runs objective.method in {pipeline_methods()}, got "
                          f"{cfg.objective.method!r}")
    if cfg.hardware.backend != "torch":
        raise ConfigError("the layer pipeline runs hardware.backend = 'torch' only")
    if cfg.train.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"train.lr_schedule {cfg.train.lr_schedule!r} is not supported by the pipeline")
    if cfg.model.shortcuts != "none":
        raise ConfigError("the layer pipeline hands each stage's output to the next stage only; shortcuts "
                          "(model.shortcuts) join layers across stages: set model.shortcuts = 'none'")
    if cfg.train.augments:
        raise ConfigError("the layer pipeline times the trainer's plain batches; set train.augment_shift_px = 0 "
                          "and train.augment_flip = false")


def run_pipeline(cfg: Config, processes: int, max_steps: int = 0, threads: int = 1,
                 split: list[list[int]] | None = None, warmup: int = 0) -> dict:
    """Train cfg's layers with `processes` pipeline stages (max_steps mini-batches; 0 = all
    train.epochs); split = the layers of each stage, default: contiguous ranges balancing the
    layers' measured update times (measure_layer_costs).  The first `warmup` steps are not timed (the pipeline drains after them).
    Returns {"split", "steps", "samples", "wall_s", "samples_per_s", "stages": [...], "state": the
    trained layers' state_dict (CPU)}; steps, samples and wall_s (the slowest stage's) count the
    timed steps only."""
    import torch.multiprocessing as mp

    from onchip_ff.data import load_dataset
    from onchip_ff.network import build_layers
    check_pipeline(cfg)
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda', but PyTorch sees no CUDA GPU here")
    data = load_dataset(cfg.data)
    _, shapes = build_layers(cfg.model, data.input_shape)
    costs = None
    if split is None:
        if processes == 1:
            split = [list(range(len(shapes)))]
        else:
            costs = measure_layer_costs(cfg, data, threads)
            split = [list(r) for r in split_layers(costs, processes)]
    if len(split) != processes or sorted(k for s in split for k in s) != list(range(len(shapes))):
        raise ConfigError(f"pipeline split {split} must give each of the {processes} stages a "
                          f"contiguous, non-empty range covering layers 0..{len(shapes) - 1}")
    plan = batch_plan(len(data.y_train), cfg.train.batch_size, cfg.train.epochs, cfg.train.seed, max_steps)
    if not 0 <= warmup < len(plan):
        raise ConfigError(f"a warm-up of {warmup} steps leaves none of the {len(plan)} steps to time")
    with tempfile.TemporaryDirectory(prefix="onchip-ff-pipeline-") as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        mp.spawn(_stage, args=(processes, cfg, split, max_steps, init_file, threads, tmp, warmup),
                 nprocs=processes, join=True)
        parts = [torch.load(os.path.join(tmp, f"stage{r}.pt"), weights_only=True) for r in range(processes)]
    stages = [p["report"] for p in parts]
    state = {k: v for p in parts for k, v in p["state"].items()}
    steps = stages[-1]["steps"]
    samples = sum(len(b) for b in plan[warmup:])
    wall = max(s["wall_s"] for s in stages)
    return {"processes": processes, "threads_per_process": threads, "split": split, "layer_costs": costs,
            "steps": steps,
            "samples": samples, "wall_s": wall, "samples_per_s": samples / wall, "stages": stages,
            "state": state}
