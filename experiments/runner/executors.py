"""Executors run calls such as worker.execute_run concurrently and hand back their results: local
processes (one fresh process per run, forked from a preloaded forkserver), Ray tasks, or inline.

Shared interface: submit("module:function", args, cpus) -> handle; wait(timeout_s) ->
[(handle, result)] of the calls finished by then (a crashed call gives a failed result);
cancel_all(); close().
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.connection import wait as wait_any
from typing import Any

from onchip_ff import __version__
from common.errors import ConfigError
from common.threads import PASSIVE_ENV, passive_threads

PRELOAD = ["__main__", "experiments.runner.worker"]  # imported once, in the forkserver
# Environment of the run processes (common/threads.py: idle OpenMP threads wait passively); a value
# the user exported wins.
WORKER_ENV = PASSIVE_ENV
PR_SET_PDEATHSIG = 1
JOIN_S = 10.0


def failed(error: str, detail: str | None = None) -> dict[str, Any]:
    """A failed run's result; `error` is cut to its first line (the rest goes to detail)."""
    lines = (error or "").strip().splitlines() or ["unknown error"]
    if len(lines) > 1:
        detail = "\n".join(lines) + ("\n" + detail if detail else "")
    return {"status": "failed", "error": lines[0], "detail": detail, "version": __version__}


def call(target: str, args: tuple) -> Any:
    """Call "module:function" — targets travel as names, so the sweep process never imports
    torch; the worker processes (and the forkserver, once) do."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the parent goes (the forkserver, which exits with the sweep), so a
    killed sweep leaves no orphan training; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            return
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        os._exit(1)  # the sweep died before prctl took effect
    except PermissionError:
        pass


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _child(conn: Any, target: str, args: tuple, sweep_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep process's to handle
    # cancel_all's SIGTERM: leave through Python's exit (finalizers release the process-shared
    # semaphore numba's thread launch creates; a SIGKILLed run leaves it to the resource tracker,
    # which warns about a "leaked semaphore" at the sweep's exit)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _die_with_parent(sweep_pid)
    try:
        result = call(target, args)
    except Exception as exc:  # fn should not raise; report it like a failed run anyway
        result = failed(f"{type(exc).__name__}: {exc}")
    conn.send(result)
    conn.close()


def _died(exitcode: int | None) -> dict[str, Any]:
    if exitcode is not None and exitcode < 0:
        how = f"killed by signal {-exitcode}" + (" (out of memory?)" if -exitcode == signal.SIGKILL else "")
    else:
        how = f"exit code {exitcode}"
    return failed(f"worker process died without a result ({how})")


class LocalExecutor:
    """One new process per call, so every run starts from the same clean state (torch threads,
    RNG, memory); forking from a forkserver that already imported torch costs ~10 ms."""

    name = "local"

    def __init__(self) -> None:
        passive_threads()  # WORKER_ENV, inherited by the forkserver, read by libgomp at load
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(PRELOAD)
        self.running: dict[int, tuple[Any, Any]] = {}  # handle -> (process, result connection)
        self._next = 0

    def submit(self, target: str, args: tuple, cpus: int = 1) -> int:
        recv, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child, args=(send, target, args, os.getpid()), daemon=True,
                                name="onchip-ff-run")
        proc.start()
        send.close()
        self._next += 1
        self.running[self._next] = (proc, recv)
        return self._next

    def wait(self, timeout_s: float) -> list[tuple[int, dict[str, Any]]]:
        if not self.running:
            return []
        owner = {}
        for handle, (proc, conn) in self.running.items():
            owner[conn] = owner[proc.sentinel] = handle
        ready = {owner[r] for r in wait_any(list(owner), timeout_s)}
        out = []
        for handle in sorted(ready):
            proc, conn = self.running.pop(handle)
            result = None
            try:
                if conn.poll():
                    result = conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
            proc.join(JOIN_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
            out.append((handle, result if result is not None else _died(proc.exitcode)))
        return out

    def cancel_all(self) -> None:
        """Stop every run in progress: SIGTERM (the worker exits cleanly), SIGKILL after JOIN_S."""
        for proc, conn in self.running.values():
            proc.terminate()
        for proc, conn in self.running.values():
            proc.join(JOIN_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self.running.clear()

    def close(self) -> None:
        self.cancel_all()


class InlineExecutor:
    """Runs each call in the sweep process itself, one at a time: no isolation between runs, but
    tracebacks and debuggers work, and it measures the runner without process start-up."""

    name = "inline"

    def __init__(self) -> None:
        self.queue: list[tuple[int, str, tuple]] = []
        self._next = 0

    def submit(self, target: str, args: tuple, cpus: int = 1) -> int:
        self._next += 1
        self.queue.append((self._next, target, args))
        return self._next

    def wait(self, timeout_s: float) -> list[tuple[int, dict[str, Any]]]:
        if not self.queue:
            return []
        handle, target, args = self.queue.pop(0)
        return [(handle, call(target, args))]

    def cancel_all(self) -> None:
        self.queue.clear()

    def close(self) -> None:
        self.queue.clear()


class RayExecutor:
    """Ray tasks (no retries: a crash is recorded as a failed run); starts a local Ray instance
    unless `address` names a running cluster. The store stays with this (driver) process."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        require_ray()
        import ray
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            env = {k: os.environ.get(k, v) for k, v in WORKER_ENV.items()}
            options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                           runtime_env={"env_vars": env})
            try:
                if address:
                    ray.init(address=address, **options)
                else:
                    ray.init(num_cpus=num_cpus, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"--ray-address {address}: cannot start or reach Ray ({exc})") from None
        self.task = ray.remote(call)
        self.refs: set[Any] = set()

    def submit(self, target: str, args: tuple, cpus: int = 1) -> Any:
        ref = self.task.options(num_cpus=cpus, max_retries=0).remote(target, args)
        self.refs.add(ref)
        return ref

    def wait(self, timeout_s: float) -> list[tuple[Any, dict[str, Any]]]:
        if not self.refs:
            return []
        ray = self.ray
        ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout_s)
        if ready:
            ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        out = []
        for ref in ready:
            self.refs.discard(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                result = failed(f"Ray task failed: {type(exc).__name__}: {exc}")
            out.append((ref, result))
        return out

    def cancel_all(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()

    def close(self) -> None:
        self.cancel_all()
        if self.started:
            self.ray.shutdown()


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--executor ray needs Ray: pip install 'onchip-ff[cluster]'")


def make_executor(kind: str, ray_address: str | None = None, num_cpus: int | None = None):
    if kind == "local":
        return LocalExecutor()
    if kind == "inline":
        return InlineExecutor()
    return RayExecutor(ray_address, num_cpus)
