"""The sweep loop: claim runs one at a time, hand them to an executor, record each result as it
arrives, keep heartbeats fresh, show one progress bar, and stop cleanly on Ctrl-C (runs in
progress go back to pending; finished results are already stored)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

import onchip_ff

from experiments.runner.store import Store, process_identity
from experiments.runner.sweep import Sweep, current_key

HEARTBEAT_S = 10.0  # how often the sweep process marks its running rows alive


def git_commit() -> str:
    """HEAD of the checkout onchip_ff is imported from, "-dirty" if tracked files are modified;
    "unknown" when onchip_ff is not in a git checkout or git is missing."""
    root = Path(onchip_ff.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return "unknown"  # installed inside some other repository (e.g. a venv in a checkout)
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


@dataclass
class Outcome:
    """What one `onchip-ff sweep` invocation found and did."""

    total: int  # runs in the sweep
    already_done: int  # done before this invocation (skipped)
    skipped_failed: int  # failed before and not retried (no --retry-failed)
    to_run: int  # pending, stale or retried runs this invocation tried to claim
    done: int = 0
    failed: int = 0
    elsewhere: int = 0  # claimed or finished by another process meanwhile
    lost: int = 0  # finished here after another process had taken the run over (not recorded)
    released: int = 0  # in progress at Ctrl-C, put back to pending
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, error) of new failures


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep; carries the Outcome so far."""

    def __init__(self, outcome: Outcome):
        super().__init__("interrupted")
        self.outcome = outcome


def run_sweep(store: Store, sweep: Sweep, executor, workers: int, threads: int,
              retry_failed: bool = False, progress: bool = True, commit: str | None = None,
              owner: str | None = None, announce: Callable[[Outcome], None] | None = None) -> Outcome:
    """Run every run of `sweep` that is not finished in `store`, at most `workers` at a time;
    `announce` sees the Outcome once the store's state is known, before anything runs."""
    owner = owner or process_identity()
    commit = commit or git_commit()
    store.rekey(current_key)  # rows written by older code under other keys for the same config
    store.add(sweep.name, list(sweep.runs))
    status = store.statuses()
    keys = [r.key for r in sweep.runs]
    todo = [k for k in keys if status[k] in ("pending", "running")
            or (retry_failed and status[k] == "failed")]
    out = Outcome(total=len(keys), already_done=sum(status[k] == "done" for k in keys),
                  skipped_failed=0 if retry_failed else sum(status[k] == "failed" for k in keys),
                  to_run=len(todo))
    if announce:
        announce(out)
    queue = deque(todo)
    in_flight: dict[object, str] = {}  # executor handle -> run key
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="run", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, mininterval=0.5)

    def show(refresh: bool = True) -> None:
        left = bar.total - out.done - out.failed - out.lost
        bar.set_postfix_str(f"done={out.done}, failed={out.failed}, remaining={left}", refresh=refresh)

    show()
    last_beat = time.monotonic()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                key = queue.popleft()
                config_json, _ = store.claim(key, owner, retry_failed)
                if config_json is None:  # another process has it (running, done or failed)
                    out.elsewhere += 1
                    bar.total -= 1
                    show()
                    continue
                in_flight[executor.submit(sweep.task, (config_json, threads), threads)] = key
            for handle, result in executor.wait(HEARTBEAT_S):
                key = in_flight.pop(handle)
                if not store.finish(key, owner, result, commit):
                    out.lost += 1
                elif result["status"] == "done":
                    out.done += 1
                else:
                    out.failed += 1
                    out.failures.append((key, result.get("error") or ""))
                show(refresh=False)
                bar.update(1)
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                store.heartbeat(owner)
                last_beat = time.monotonic()
    except BaseException as exc:  # Ctrl-C above all: stop the runs, hand back what we hold
        executor.cancel_all()
        out.released = store.release_all(owner)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(out) from None
        raise
    finally:
        bar.close()
    return out
