"""`onchip-ff memory CONFIG.toml --out DIR`: the memory accountant's predictions next to measured
bytes for every point of the config's grids -> DIR/memory.csv, DIR/memory.png and DIR/ratios.md
(DF or SFF over BP and checkpointed-BP peak ratios over batch and depth); with memory.chip, the
chip view (accountant/chip.py) next to the simulator's tally of the same step
(accountant/chip_tally.py) -> DIR/chip.csv, DIR/chip.png and its ratios in DIR/ratios.md. Each point is one run of the
experiment runner (results store DIR/memory.sqlite by default): an interrupted command resumes where
it stopped, a failing point is stored as failed and the others go on."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from accountant.memory import (COMPONENTS, METHODS, OPTIMIZERS, NumberFormat, cnn_layers, mlp_layers, predict,
                              resnet_layers, spec_from_config)
from hw_models.blas import set_threads
from accountant.measure import measure
from accountant.chip import CHIP_COMPONENTS, ChipBits, predict_chip
from accountant.chip_tally import tally
from accountant.tape import CHIP_ROLES
import onchip_ff
from onchip_ff import config
from onchip_ff.data import load_dataset
from common.coerce import check
from common.errors import ConfigError, OnchipError
from common.tomlfile import read_toml, typed
from experiments.outdir import atomic_write_text

CSV_COLUMNS = ("method", "arch", "batch", "depth", "format", "optimizer", "component", "predicted_bytes",
               "measured_bytes", "rel_error", "grads", "measure", "exact", "note")
CHIP_COLUMNS = ("method", "arch", "batch", "depth", "format", "optimizer", "grads", "component", "unit",
                "predicted", "tallied", "rel_error", "exact")
EXAMPLE = "experiments/configs/memory_fmnist.toml"
GRID_LISTS = ("method", "arch", "batch", "depth", "format", "optimizer")
ARCH_KEYS = {"mlp_width": 1000, "cnn_channels": [32, 64, 128], "cnn_pool": 2, "cnn_pool_every": 1,
             "grads": ["freed"]}  # optional; cnn_* also shape the ResNet (residual blocks)
N_CLASSES = 10  # Fashion-MNIST, as measured
HOW = {"weights": "nbytes", "master_copy": "nbytes", "optimizer": "nbytes", "inputs": "nbytes",
       "gradients": "nbytes", "activations": "saved_tensors_hooks", "peak": "torch.profiler"}


@dataclass(frozen=True)
class Point:
    method: str
    arch: str  # label: mlp-<width>, cnn-<channels>-p<pool> or resnet-<channels>-p<pool> (+ e<pool_every>)
    batch: int
    depth: int
    format: str
    optimizer: str
    kind: str = "mlp"  # "mlp", "cnn" or "resnet"
    width: int = 1000
    channels: tuple[int, ...] = (32, 64, 128)
    pool: int = 2
    grads: str = "freed"  # "freed": .grad freed after each step (the learners); "kept": to the next step
    pool_every: int = 1  # cnn, resnet: pool after every pool_every-th layer / block
    input_shape: tuple[int, ...] = (1, 28, 28)  # one sample, as [memory.data] gives it (default Fashion-MNIST)
    n_classes: int = 10

    def key(self) -> dict:
        return {k: getattr(self, k) for k in ("method", "arch", "batch", "depth", "format", "optimizer",
                                              "grads")}

    def layers(self, depth: int | None = None):
        d = depth or self.depth
        if self.kind == "mlp":
            return mlp_layers(self.input_shape, (self.width,) * d)
        chans = tuple(self.channels[min(i, len(self.channels) - 1)] for i in range(d))
        build = resnet_layers if self.kind == "resnet" else cnn_layers
        return build(self.input_shape, chans, 3, self.pool, pool_every=self.pool_every)

    def shrinks(self, depth: int | None = None) -> bool:
        """True when the poolings of `depth` (default: the point's) layers leave no pixel."""
        pools = (depth or self.depth) // self.pool_every
        return self.kind != "mlp" and min(self.input_shape[1:]) // self.pool ** pools < 1


@dataclass(frozen=True)
class MemorySettings:
    """The [memory] keys of a memory file (its [memory.formats.*] and [[memory.grid]] apart)."""

    steps: int = 2  # training steps measured per point (the last is the steady state)
    threads: int = 1  # torch threads of the measurements
    seed: int = 0  # train.seed of every point
    checkpoint_every: int = 0  # bp_ckpt: layers per checkpointed segment (0 = round(sqrt(depth)))
    block_size: int = 2  # dfo: layers per DF-O block
    intff_block_size: int = 2  # intff: layers per IntFF block (the last may be shorter)
    cuda: bool = True  # also torch.cuda.max_memory_allocated when a GPU is present
    map_batch: tuple[int, ...] = (32, 128, 1024, 8192)  # batch sizes of the analytic map (ratios.md)
    map_depth: tuple[int, ...] = (3, 12, 48)  # depths of the analytic map
    chip: bool = True  # also the chip view, tallied on a simulator step (float32: the ideal analog array)

    def __post_init__(self) -> None:
        for key in ("steps", "threads", "block_size", "intff_block_size", "checkpoint_every"):
            low = 0 if key == "checkpoint_every" else 1
            check(getattr(self, key) >= low, f"memory.{key}", f">= {low}", getattr(self, key))
        for key in ("map_batch", "map_depth"):
            check(all(v >= 1 for v in getattr(self, key)), f"memory.{key}", "a list of integers >= 1",
                  list(getattr(self, key)))


def _fail(msg: str) -> None:
    raise ConfigError(msg)


def load_memory_config(path: str | Path) -> tuple[dict, dict[str, NumberFormat], list[Point]]:
    """[memory] settings, named formats and the grid points (union of the grids' products)."""
    raw = read_toml(path, "memory", EXAMPLE)
    if set(raw) != {"memory"}:
        _fail(f"{path}: a memory config has one [memory] table (with [memory.formats.*] and "
              f"[[memory.grid]]), found {sorted(raw)}")
    mem = dict(raw["memory"])
    formats_raw, grids, data_raw = mem.pop("formats", {}), mem.pop("grid", []), mem.pop("data", None)
    shape, n_classes = (1, 28, 28), N_CLASSES
    if data_raw is not None:  # the sample shape and class count of any data source
        if not isinstance(data_raw, dict):
            _fail(f"memory.data in {path} must be a table of [data] keys, e.g. name = \"npz\", path = ...")
        data = load_dataset(typed(config.DataConfig, data_raw, "memory.data", str(path)))
        shape, n_classes = data.input_shape, data.n_classes
    settings = dataclasses.asdict(typed(MemorySettings, mem, "memory", str(path)))
    formats = {"float32": NumberFormat()}
    for name, f in formats_raw.items():
        if not isinstance(f, dict) or not (f.get("weight_bits") or f.get("pulse_update")):
            _fail(f"memory.formats.{name}.weight_bits must be 2..16, or pulse_update true (float32 is "
                  "built in)")
        formats[name] = typed(NumberFormat, f, f"memory.formats.{name}", str(path), name=name)
    if not grids:
        _fail(f"{path}: no [[memory.grid]] tables; each lists method, arch, batch, depth, format, "
              "optimizer")
    allowed = {"method": METHODS, "arch": ("mlp", "cnn", "resnet"), "format": tuple(formats),
               "optimizer": OPTIMIZERS}
    points: dict[Point, None] = {}
    for g, grid in enumerate(grids):
        if not set(GRID_LISTS) <= set(grid) <= set(GRID_LISTS) | set(ARCH_KEYS):
            _fail(f"memory.grid[{g}] must have the lists {', '.join(GRID_LISTS)} (optional: "
                  f"{', '.join(ARCH_KEYS)}); got {sorted(grid)}")
        arch = {k: grid.get(k, v) for k, v in ARCH_KEYS.items()}
        chans = arch["cnn_channels"]
        if (not isinstance(arch["mlp_width"], int) or arch["mlp_width"] < 1 or not isinstance(chans, list)
                or not chans or any(not isinstance(c, int) or c < 1 for c in chans)
                or any(not isinstance(arch[k], int) or arch[k] < 1 for k in ("cnn_pool", "cnn_pool_every"))
                or not isinstance(arch["grads"], list) or not set(arch["grads"]) <= {"kept", "freed"}):
            _fail(f"memory.grid[{g}]: mlp_width, cnn_pool, cnn_pool_every must be integers >= 1, "
                  f"cnn_channels a list of them and grads a list of 'kept' / 'freed'; got {arch}")
        for key in GRID_LISTS:
            vals = grid[key]
            if not isinstance(vals, list) or not vals:
                _fail(f"memory.grid[{g}].{key} must be a non-empty list")
            if key in allowed and any(v not in allowed[key] for v in vals):
                _fail(f"memory.grid[{g}].{key}: {vals} must be among {', '.join(allowed[key])}")
            if key in ("batch", "depth") and any(not isinstance(v, int) or v < 1 for v in vals):
                _fail(f"memory.grid[{g}].{key} must list integers >= 1, got {vals}")
        for method, kind, batch, depth, fmt, opt, grads in itertools.product(
                *(grid[k] for k in GRID_LISTS), arch["grads"]):
            pool, every = arch["cnn_pool"], arch["cnn_pool_every"]
            _check_method(g, method, kind, arch, n_classes)
            if kind != "mlp" and len(shape) != 3:
                _fail(f"memory.grid[{g}]: arch {kind!r} needs images, [memory.data] has samples of shape {shape}")
            chans = tuple(chans)
            label = (f"mlp-{arch['mlp_width']}" if kind == "mlp" else
                     f"{kind}-{'.'.join(map(str, chans))}-p{pool}" + (f"e{every}" if every > 1 else ""))
            point = Point(method, label, batch, depth, fmt, opt, kind, arch["mlp_width"], chans, pool,
                          grads, every, tuple(shape), n_classes)
            if point.shrinks():
                _fail(f"memory.grid[{g}]: a depth-{depth} {kind.upper()} with pool {pool} every "
                      f"{every} layer(s) shrinks {shape[1]}x{shape[2]} inputs to nothing; lower the depth or set "
                      "cnn_pool = 1")
            points[point] = None
    return settings, formats, list(points)


def _check_method(g: int, method: str, kind: str, arch: dict, n_classes: int) -> None:
    """IntFF is an MLP learner; DeeperForward splits every layer into one group per class."""
    if method == "intff" and kind != "mlp":
        _fail(f"memory.grid[{g}]: method 'intff' runs on arch 'mlp' only; put it in a grid with "
              'arch = ["mlp"]')
    widths = [arch["mlp_width"]] if kind == "mlp" else arch["cnn_channels"]
    if method == "deeperforward" and any(w % n_classes for w in widths):
        key = "mlp_width" if kind == "mlp" else "cnn_channels"
        _fail(f"memory.grid[{g}]: method 'deeperforward' needs {key} = {widths} in multiples of the "
              f"{n_classes} classes (one channel group per class)")


def point_config(p: Point, settings: dict, fmt: NumberFormat) -> config.Config:
    """The onchip_ff Config of a grid point.  Fixed-point formats run on the simulator's digital
    array with 32-bit accumulators (16 bits can overflow on 784 inputs; no buffer the simulator
    keeps depends on the accumulator width: acc_bits enters the hardware-view workspace only)."""
    ov = _overrides(p, settings)
    if fmt.weight_bits:
        ov += ["hardware.backend=sim", "hardware.preset=fixed8", f"hardware.weight_bits={fmt.weight_bits}",
               f"hardware.input_bits={fmt.input_bits}", "hardware.acc_bits=32"]
    return config.load(None, ov)


def _overrides(p: Point, settings: dict) -> list[str]:
    """The model, method and training overrides of a point."""
    chans = [p.channels[min(i, len(p.channels) - 1)] for i in range(p.depth)]
    blocks = []
    if p.method == "intff":  # blocks of intff_block_size layers, the last shorter
        k = settings["intff_block_size"]
        blocks = [min(k, p.depth - i) for i in range(0, p.depth, k)]
    ov = [f"model.arch={p.kind}", f"model.hidden={[p.width] * p.depth}",
          f"model.channels={chans}", f"model.pool={p.pool}", f"model.pool_every={p.pool_every}",
          f"objective.method={ {'dfo': 'df', 'bp_ckpt': 'bp'}.get(p.method, p.method) }",
          f"objective.df.block_size={settings['block_size'] if p.method == 'dfo' else 1}",
          f"objective.intff.intff_blocks={blocks}",
          f"train.optimizer={p.optimizer}", f"train.batch_size={p.batch}", f"train.seed={settings['seed']}"]
    return ov


def _rel(pred: int | None, meas: int | None) -> float | None:
    if pred is None or meas is None:
        return None
    return 0.0 if pred == meas else (pred - meas) / meas if meas else math.inf


def point_rows(p: Point, settings: dict, fmt: NumberFormat) -> list[dict]:
    cfg = point_config(p, settings, fmt)
    spec = spec_from_config(cfg, batch=p.batch, method=p.method, input_shape=p.input_shape,
                            n_classes=p.n_classes, checkpoint_every=settings["checkpoint_every"])
    spec = replace(spec, fmt=fmt, free_grads=p.grads == "freed")
    pred = predict(spec)
    act_item = NumberFormat.itemsize(fmt.input_bits) if fmt.input_bits else 0
    meas = measure(cfg, p.method, p.batch, settings["steps"], settings["checkpoint_every"],
                   input_shape=p.input_shape, n_classes=p.n_classes,
                   seed=settings["seed"], act_itemsize=act_item, with_cuda=settings["cuda"],
                   free_grads=spec.free_grads)
    sim = bool(fmt.weight_bits)
    predicted = dict(pred.components, peak=pred.peak_bytes)
    predicted["activations+gradients"] = predicted["activations"] + predicted["gradients"]
    meas["activations+gradients"] = meas["activations"] + meas["gradients"]
    meas["workspace"] = meas["peak"] - sum(meas[c] for c in COMPONENTS if c != "workspace")
    rows: list[dict] = []

    def add(component, pred_b, meas_b, how, exact, note=""):
        rel = _rel(pred_b, meas_b) if exact else None
        rows.append({**p.key(), "component": component, "predicted_bytes": pred_b,
                     "measured_bytes": meas_b, "rel_error": rel, "measure": how, "exact": exact,
                     "note": note})

    for comp in COMPONENTS:
        if comp == "workspace":
            if not sim:  # the simulator's peak (float mirrors, code caches) is no chip's: chip.csv
                add(comp, predicted[comp], meas[comp], "peak - components", True,
                    "derived: peak minus the other components")
            continue
        note = ""
        if comp == "activations" and act_item:
            note = f"saved storages sized at {act_item} B/element + 4 B/row (input_bits {fmt.input_bits})"
        if comp == "master_copy" and sim:
            note = "float32 Parameter the optimizer updates next to the integer codes"
        add(comp, predicted[comp], meas[comp], HOW[comp], True, note)
    add("activations+gradients", predicted["activations+gradients"], meas["activations+gradients"],
        "saved_tensors_hooks + nbytes", True)
    if sim:
        add("sim_cache", predicted["master_copy"], meas["sim_cache"], "nbytes", True,
            "digital tiles keep their codes as float32 for exact BLAS")
    else:
        add("peak", predicted["peak"], meas["peak"], "torch.profiler", True,
            f"peak in {pred.peak_phase}; CPU allocator bytes as requested (exact)")
        if meas.get("cuda_peak") is not None:
            add("peak_cuda", None, meas["cuda_peak"], "torch.cuda.max_memory_allocated", False,
                "CUDA: caching allocator rounds blocks to 512 B; cuDNN workspace not modelled")
    return rows


def chip_config(p: Point, settings: dict, fmt: NumberFormat) -> config.Config:
    """The simulator run of a point's chip view: its own config for fixed-point formats (digital
    array), the ideal analog array for float32, constant-step pulsed devices taking aihwkit pulse
    trains for a pulse_update format."""
    if fmt.weight_bits:
        return point_config(p, settings, fmt)
    hw = ["hardware.backend=sim", "hardware.preset=ideal"]
    if fmt.pulse_update:  # aihwkit's stochastic pulse trains on constant-step devices
        hw = ["hardware.backend=sim", "hardware.preset=reram_pulsed", 'hardware.noise=["pulsed_constant"]',
              'hardware.pulsed_constant.update_scheme="pulse_train"']
    return config.load(None, [*_overrides(p, settings), *hw])


def chip_rows(p: Point, settings: dict, fmt: NumberFormat) -> list[dict]:
    """predict_chip next to the tally of the last of `steps` simulator steps: bits per buffer at
    the peak, each dynamic buffer's own largest value over the step (<role>_max), the peak, the
    array weights and devices."""
    cfg = chip_config(p, settings, fmt)
    spec = spec_from_config(cfg, batch=p.batch, method=p.method, input_shape=p.input_shape,
                            n_classes=p.n_classes, checkpoint_every=settings["checkpoint_every"])
    spec = replace(spec, fmt=fmt, free_grads=p.grads == "freed")
    pred = predict_chip(spec)
    got = tally(cfg, p.method, p.batch, ChipBits.of(fmt, p.n_classes), settings["steps"],
                settings["checkpoint_every"], p.input_shape, p.n_classes, settings["seed"], spec.free_grads)
    pairs = [(c, "bits", pred.at_peak[c], got.at_peak[c]) for c in CHIP_COMPONENTS]
    pairs += [(f"{c}_max", "bits", pred.role_peak[c], got.role_peak[c]) for c in CHIP_ROLES]
    pairs += [("peak", "bits", pred.peak_bits, got.peak_bits),
              ("array_weights", "weights", pred.array_weights, got.array_weights),
              ("array_devices", "devices", pred.array_devices, got.array_devices)]
    return [{**p.key(), "component": c, "unit": unit, "predicted": a, "tallied": b, "rel_error": _rel(a, b),
             "exact": True} for c, unit, a, b in pairs]


def write_csv(rows: list[dict], path: Path) -> None:
    """memory.csv, atomically."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({**r, "rel_error": "" if r["rel_error"] is None else f"{r['rel_error']:.6f}",
                    "measured_bytes": "" if r["measured_bytes"] is None else r["measured_bytes"],
                    "predicted_bytes": "" if r["predicted_bytes"] is None else r["predicted_bytes"]})
    atomic_write_text(path, f.getvalue())


def write_chip_csv(rows: list[dict], path: Path) -> None:
    """chip.csv, atomically."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=CHIP_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({**r, "rel_error": f"{r['rel_error']:.6f}"})
    atomic_write_text(path, f.getvalue())


MEMORY_TASK = "experiments.memory_report:execute_point"
POINT_SETTINGS = ("steps", "threads", "seed", "checkpoint_every", "block_size", "cuda", "chip")


def memory_sweep(path: Path, settings: dict, formats: dict[str, NumberFormat], points: list[Point]):
    """The points as runs of the experiment runner; each run's config is the JSON of the point, its
    number format and the settings a measurement depends on (so its key changes when they do)."""
    from experiments.runner.sweep import Run, Sweep
    runs = []
    for p in points:
        keys = POINT_SETTINGS + (("intff_block_size",) if p.method == "intff" else ())
        point = dataclasses.asdict(p)
        for key, default in (("pool_every", 1), ("input_shape", (1, 28, 28)), ("n_classes", 10)):
            if point[key] == default:  # the keys of points stored before the field existed
                del point[key]
        fmt = dataclasses.asdict(formats[p.format])
        if not fmt["pulse_update"]:  # the key of points stored before the field existed
            del fmt["pulse_update"]
        text = json.dumps({"memory_point": point, "format": fmt,
                           "settings": {k: settings[k] for k in keys}},
                          sort_keys=True, separators=(",", ":"))
        label = " ".join(f"{k}={v}" for k, v in p.key().items())
        runs.append(Run(hashlib.sha256(text.encode()).hexdigest(), len(runs), (), text, label))
    return Sweep(f"memory_{Path(path).stem}", Path(path), Path(path), tuple(runs), 0, MEMORY_TASK)


def execute_point(config_json: str, threads: int) -> dict:
    """Worker side of one memory point: predicted and measured rows; never raises."""
    from experiments.runner.executors import failed
    try:
        raw = json.loads(config_json)
        point = raw["memory_point"]
        p = Point(**{**point, "channels": tuple(point["channels"]),
                     "input_shape": tuple(point.get("input_shape", (1, 28, 28)))})
        settings = raw["settings"]
        set_threads(settings["threads"])
        fmt = NumberFormat(**raw["format"])
        rows = point_rows(p, settings, fmt)
        chip = chip_rows(p, settings, fmt) if settings.get("chip") else []
        return {"status": "done", "metrics": {"rows": rows, "chip": chip}, "version": onchip_ff.__version__}
    except OnchipError as exc:
        return failed(str(exc))
    except Exception as exc:
        return failed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def stored_rows(sweep, store_path: Path) -> tuple[list[dict], list[dict], int]:
    """The memory rows and chip rows of the sweep's done points in point order, and how many
    points are not done."""
    from experiments.runner.store import Store
    with Store(store_path, readonly=True) as store:
        by_key = {r["key"]: r for r in store.rows()}
    rows, chip, missing = [], [], 0
    for run in sweep.runs:
        r = by_key.get(run.key)
        if r is None or r["status"] != "done":
            missing += 1
            continue
        metrics = json.loads(r["metrics"])
        rows += metrics["rows"]
        chip += metrics.get("chip", [])
    return rows, chip, missing


def run_memory(config_path: str | Path, out: Path, args: argparse.Namespace,
               loaded: tuple[dict, dict[str, NumberFormat], list[Point]] | None = None) -> int:
    """Measure every point through the runner into the store, then write the outputs from it
    (loaded: load_memory_config(config_path) when the caller has it already)."""
    from experiments.runner.commands import execute
    settings, formats, points = loaded or load_memory_config(config_path)
    sweep = memory_sweep(Path(config_path), settings, formats, points)
    store_path = Path(args.store) if getattr(args, "store", None) else out / "memory.sqlite"
    t0 = time.perf_counter()
    code = execute(sweep, store_path, args)
    if code == 130:
        return code
    rows, chip, missing = stored_rows(sweep, store_path)
    if not rows:
        print(f"no point was measured; see `onchip-ff results {store_path}`")
        return 1
    write_csv(rows, out / "memory.csv")
    from experiments.memory_plots import plot_chip, plot_memory
    from experiments.memory_ratios import chip_table, ratio_map, ratio_table, summary
    plot_memory(rows, out / "memory.png")
    table, worst = ratio_table(rows), summary(rows) + summary(chip, 'chip: ')
    amap = ratio_map(points, settings, formats)
    text = "# Peak ratios, measured\n" + table
    outputs = [out / "memory.csv", out / "memory.png"]
    if chip:
        write_chip_csv(chip, out / "chip.csv")
        plot_chip(chip, out / "chip.png")
        text += ("\n# Chip view: peak ratios, tallied on the simulator\n" + chip_table(chip)
                 + "\n# Chip view: peak ratios, analytic map\n" + ratio_map(points, settings, formats, chip=True))
        outputs += [out / "chip.csv", out / "chip.png"]
    atomic_write_text(out / "ratios.md", text + "\n# Peak ratios, analytic map\n" + amap + "\n# Worst errors\n\n"
                      + worst)
    print(worst + text + "\nanalytic map (predicted only):\n" + amap)
    gap = f" ({missing} points failed: not in the outputs)" if missing else ""
    print(f"{len(points)} points{gap}, {len(rows) + len(chip)} rows in {time.perf_counter() - t0:.1f} s -> "
          f"{', '.join(map(str, outputs + [out / 'ratios.md']))}; store {store_path}")
    return code
