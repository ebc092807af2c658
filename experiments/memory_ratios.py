"""Text outputs of the memory report (experiments/memory_report.py): measured and analytic peak
ratios of the layer-local methods (DF, SFF) over BP and checkpointed BP, and the worst
prediction errors per component."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from accountant.chip import predict_chip
from accountant.memory import MemorySpec, NumberFormat, default_ctx, predict

if TYPE_CHECKING:
    from experiments.memory_report import Point

LOCAL = ("df", "sff")  # the layer-local methods the ratio tables compare with BP


def _ratio_text(local: tuple, base: tuple) -> str:
    """'measured (predicted)' ratio of two (measured, predicted) peaks; bold when <= 0.4."""
    (m_local, p_local), (m_base, p_base) = local, base
    pred = p_local / p_base
    meas = m_local / m_base if m_local is not None and m_base else None
    txt = f"{meas:.2f} ({pred:.2f})" if meas is not None else f"({pred:.2f})"
    return f"**{txt}**" if (meas if meas is not None else pred) <= 0.4 else txt


def _table(title: str, batches: list[int], depths: list[int], cell) -> list[str]:
    out = [f"\n**{title}**\n", "| depth | " + " | ".join(f"batch {b}" for b in batches) + " |",
           "|---|" + "---|" * len(batches)]
    return out + [f"| {d} | " + " | ".join(cell(b, d) for b in batches) + " |" for d in depths]


def ratio_table(rows: list[dict], keys: tuple[str, str] = ("measured_bytes", "predicted_bytes"),
                what: str = "measured") -> str:
    """Markdown: DF (SFF) / BP and / BP-ckpt peak ratios, measured (predicted), per group x batch x
    depth, for every layer-local method of LOCAL with measured points (keys: the row fields of the
    measured and predicted peaks; what: the word for the measurement)."""
    peak = {(r["method"], r["arch"], r["batch"], r["depth"], r["format"], r["optimizer"], r["grads"]):
            (r[keys[0]], r[keys[1]]) for r in rows if r["component"] == "peak"}
    out = []
    for num in LOCAL:
        for arch, fmt, opt, grads in sorted({(k[1], k[4], k[5], k[6]) for k in peak if k[0] == num}):
            have = {(k[2], k[3]) for k in peak
                    if k[0] == num and (k[1], k[4], k[5], k[6]) == (arch, fmt, opt, grads)}

            def cell(b, d, num=num, arch=arch, fmt=fmt, opt=opt, grads=grads, have=have):
                key = (arch, b, d, fmt, opt, grads)
                if (b, d) not in have:
                    return ""
                return " / ".join(_ratio_text(peak[(num,) + key], peak[(base,) + key])
                                  if (base,) + key in peak else "–" for base in ("bp", "bp_ckpt"))
            name = num.upper()
            out += _table(f"{arch}, {fmt}, {opt}, grads {grads}: peak {name} / BP and {name} / BP-ckpt, "
                          f"{what} (predicted); bold: {name} <= 40%", sorted({b for b, _ in have}),
                          sorted({d for _, d in have}), cell)
    return "\n".join(out) + "\n"


def ratio_map(points: list[Point], settings: dict, formats: dict[str, NumberFormat], chip: bool = False) -> str:
    """Predicted-only DF / BP and DF / BP-ckpt peak ratios over map_batch x map_depth for every
    (architecture, format, optimizer, grads) group of the float32 points; SFF / BP and SFF / BP-ckpt
    too for the groups with SFF points: where the layer-local method needs <= 40%."""
    groups = {replace(p, method="df", batch=1, depth=1): None for p in points if p.format == "float32"}
    groups.update({replace(p, batch=1, depth=1): None for p in points
                   if p.format == "float32" and p.method == "sff"})
    out, shrunk = [], False
    peak = (lambda sp: predict_chip(sp).peak_bits) if chip else (lambda sp: predict(sp).peak_bytes)
    for g in groups:
        def cell(b, d, g=g):
            nonlocal shrunk
            if g.shrinks(d):
                shrunk = True
                return "-"
            spec = MemorySpec(g.layers(d), g.input_shape, g.n_classes, method=g.method, batch=b,
                              optimizer=g.optimizer,
                              block_size=settings["block_size"],
                              checkpoint_every=settings["checkpoint_every"],
                              fmt=formats[g.format], ctx=default_ctx(), free_grads=g.grads == "freed")
            pk = {m: peak(replace(spec, method=m)) for m in (g.method, "bp", "bp_ckpt")}
            return " / ".join(_ratio_text((None, pk[g.method]), (None, pk[m])) for m in ("bp", "bp_ckpt"))
        name = g.method.upper()
        view = "chip view: predicted digital-buffer" if chip else "predicted"
        out += _table(f"{g.arch}, {g.format}, {g.optimizer}, grads {g.grads}: {view} peak {name} / BP "
                      f"and {name} / BP-ckpt; bold: {name} <= 40%", settings["map_batch"],
                      settings["map_depth"], cell)
    if shrunk:
        out.append("-: no such network (its pooling shrinks the input below 1x1 before that depth)\n")
    return "\n".join(out) + "\n"


def chip_table(chip: list[dict]) -> str:
    """ratio_table of the chip view: digital-buffer peaks tallied on the simulator (predicted)."""
    return ratio_table(chip, ("tallied", "predicted"), "tallied")


def summary(rows: list[dict], prefix: str = "") -> str:
    """Worst |rel_error| per component over the rows compared exactly (prefix: before each
    component's name; the table header only without one)."""
    worst: dict[str, tuple[float, dict]] = {}
    for r in rows:
        if r["exact"] and r["rel_error"] is not None:
            e = abs(r["rel_error"])
            if r["component"] not in worst or e > worst[r["component"]][0]:
                worst[r["component"]] = (e, r)
    lines = [] if prefix else ["| component | rows | worst abs rel_error | at |", "|---|---|---|---|"]
    for comp, (e, r) in worst.items():
        n = sum(1 for x in rows if x["component"] == comp and x["exact"] and x["rel_error"] is not None)
        lines.append(f"| {prefix}{comp} | {n} | {e:.2e} | {r['method']} {r['arch']} b{r['batch']} d{r['depth']} "
                     f"{r['format']} {r['optimizer']} |")
    return "\n".join(lines) + "\n"
