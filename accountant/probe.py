"""The memory probe of `train` (metrics.json "memory"): the accountant's predicted peak next to the
peak measured over the run's first steps (accountant/measure.py), and on the simulator the chip
view's peak next to the chip tally of the second step (accountant/chip_tally.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import tracemalloc

import torch

from accountant.measure import ProfiledSteps, sim_buffers, storage_bytes


class RunProbe:
    """Predicted and measured peak bytes of a `train` run, measured on its first `steps` steps
    only: parameters and buffers present before + the highest bytes PyTorch's CPU allocator
    holds on top during those steps (torch.profiler) + the batch arrays; on the simulator also
    its tiles' arrays (nbytes) and the numpy peak of those steps (tracemalloc), and the chip view's
    peak bits against the chip tally of the second step (accountant/chip_tally.py)."""

    def __init__(self, cfg, learner, input_shape, n_classes: int, batch: int, steps: int = 2) -> None:
        from accountant.memory import predict, spec_from_config
        from common.errors import OnchipError
        self.learner, self.steps, self.done = learner, steps, 0
        self.sim = cfg.hardware.backend == "sim"
        self.prof: ProfiledSteps | None = None
        self.result: dict[str, object] = {"measured_steps": 0, "predicted_peak_bytes": None,
                                          "measured_peak_bytes": None, "rel_error": None}
        self.chip_bits = None
        try:
            spec = spec_from_config(cfg, batch=batch, input_shape=tuple(input_shape), n_classes=n_classes)
            pred = predict(spec)
            self.result.update(predicted_peak_bytes=pred.peak_bytes, predicted_components=pred.components,
                               predicted_peak_phase=pred.peak_phase)
        except OnchipError as exc:
            self.result["note"] = f"no prediction: {exc}"
            spec = None
        if self.sim:
            self.result["note"] = ("simulator: the prediction is the hardware view (integer codes); "
                                   "measured adds float32 mirrors, code caches and numpy temporaries; "
                                   "chip_*: the chip view against the simulator's tally of the second step")
            if spec is not None and steps >= 2:
                from accountant.chip import ChipBits, predict_chip
                self.chip_bits = ChipBits.of(spec.fmt, n_classes)
                self.chip_spec = spec
                self.result.update(chip_predicted_peak_bits=predict_chip(spec).peak_bits,
                                   chip_tallied_peak_bits=None, chip_rel_error=None)

    @contextlib.contextmanager
    def step(self, x: torch.Tensor, y: torch.Tensor):
        if self.done >= self.steps:
            yield
            return
        if self.prof is None:
            self.base = storage_bytes([*self.learner.parameters(), *self.learner.buffers()])
            self.batch_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()
            try:
                self.prof = ProfiledSteps().__enter__()
            except RuntimeError as exc:  # e.g. a profiler the caller already runs
                self.result["note"] = f"not measured: {exc}"
                self.steps = 0
                yield
                return
            self.tracing = self.sim and not tracemalloc.is_tracing()
            if self.tracing:
                tracemalloc.start()
        try:
            with self.prof.step(self.done), self._chip(x, y) as tally:
                yield
        except BaseException:
            self.finish()
            raise
        if tally is not None:
            if x.shape[0] != self.chip_spec.batch:  # a short last batch: the chip view at the batch tallied
                from accountant.chip import predict_chip
                self.chip_spec = dataclasses.replace(self.chip_spec, batch=x.shape[0])
                self.result["chip_predicted_peak_bits"] = predict_chip(self.chip_spec).peak_bits
            pred = self.result["chip_predicted_peak_bits"]
            self.result.update(chip_tallied_peak_bits=tally.peak_bits,
                               chip_rel_error=(pred - tally.peak_bits) / tally.peak_bits)
        self.done += 1
        if self.done >= self.steps:
            self.finish()

    def _chip(self, x: torch.Tensor, y: torch.Tensor):
        """The chip tally of the second step (the steady state: optimizer state exists) on the
        simulator; a null context otherwise."""
        if self.chip_bits is None or self.done != 1:
            return contextlib.nullcontext()
        from accountant.chip_tally import ChipTally
        return ChipTally(self.learner, x, y, self.chip_bits)

    def finish(self) -> None:
        if self.prof is None or self.result["measured_steps"]:
            return
        np_peak = tracemalloc.get_traced_memory()[1] if self.sim else 0
        if getattr(self, "tracing", False):
            tracemalloc.stop()
        self.prof.__exit__(None, None, None)
        peaks = self.prof.peaks()
        measured = self.base + max(peaks, default=0) + self.batch_bytes
        if self.sim:
            measured += sum(sim_buffers(self.learner).values()) + np_peak
        pred = self.result["predicted_peak_bytes"]
        self.result.update(measured_steps=self.done, measured_peak_bytes=measured,
                           rel_error=None if pred is None or self.sim else (pred - measured) / measured)
        self.steps = self.done
