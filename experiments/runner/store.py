"""The SQLite results store of sweeps: one row per run keyed by config hash; the file is validated
before anything is written; runs are claimed atomically and finished in one statement.

Concurrency: WAL mode, one connection per process, every transaction a few statements long. A
claim takes a row that is `pending` (or `failed`, when retrying) or `running` but stale: its owner
process is dead (same host: pid gone, a zombie, or a new process under a reused pid) or its
heartbeat is older than STALE_AFTER_S. A result is one UPDATE guarded by the owner, so a killed
process loses no finished result and two processes can never both record the same run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from common.errors import OnchipError

APPLICATION_ID = 0x6F636666  # "ocff" in the SQLite header marks an onchip-ff results store
SCHEMA_VERSION = 1  # PRAGMA user_version
SQLITE_MAGIC = b"SQLite format 3\x00"
STALE_AFTER_S = 120.0  # a running row whose heartbeat is older than this may be claimed again
BUSY_TIMEOUT_S = 60.0  # how long a statement waits for another process's write lock
STATUSES = ("pending", "running", "done", "failed")
COLUMNS = (  # (name, declaration) of the runs table, in order
    ("key", "TEXT PRIMARY KEY"),  # sha256 of the canonical config JSON
    ("sweep", "TEXT NOT NULL"),  # name of the sweep that first added the run
    ("position", "INTEGER NOT NULL"),  # order within that sweep
    ("overrides", "TEXT NOT NULL"),  # JSON list of `section.key=value` applied to the base config
    ("config", "TEXT NOT NULL"),  # canonical JSON of the fully resolved config
    ("status", "TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed'))"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),  # how many times the run was claimed
    ("owner", "TEXT"),  # host:pid:start-ticks of the sweep process that claimed it last
    ("heartbeat", "REAL"),  # unix time the owner last said it is alive
    ("created", "REAL NOT NULL"),
    ("started", "REAL"),
    ("finished", "REAL"),
    ("test_accuracy", "REAL"),
    ("train_accuracy", "REAL"),
    ("epochs", "INTEGER"),
    ("wall_s", "REAL"),  # training wall time in the worker
    ("metrics", "TEXT"),  # JSON of the trainer's metrics dict (history, versions, ...)
    ("error", "TEXT"),  # failed: one line
    ("detail", "TEXT"),  # failed: traceback, when the error was not one meant for people
    ("version", "TEXT"),  # onchip_ff.__version__ in the worker
    ("git_commit", "TEXT"),  # commit of the checkout ("-dirty" if modified) or "unknown"
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
FIX = "nothing was written; pass a new --store path"


class StoreError(OnchipError):
    """The --store file is missing, foreign, corrupt or cannot be written."""


def _start_ticks(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process from /proc, or None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], fields[19]


def process_identity(pid: int | None = None) -> str:
    """host:pid:start-ticks; the start time tells a reused pid from the original process."""
    pid = os.getpid() if pid is None else pid
    info = _start_ticks(pid)
    return f"{socket.gethostname()}:{pid}:{info[1] if info else ''}"


def owner_alive(owner: str | None) -> bool | None:
    """False if the owner process is provably gone, True if alive, None if unknown (other host)."""
    if not owner:
        return False
    host, pid_text, ticks = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = _start_ticks(pid)
    if info is None:
        return True
    state, now_ticks = info
    return state not in ("Z", "X") and (not ticks or ticks == now_ticks)


def _header(path: Path) -> bool:
    """Check the file's SQLite header; False when there is nothing yet (absent or empty file)."""
    if path.is_dir():
        raise StoreError(f"--store {path} is a folder; pass the path of a .sqlite file")
    try:
        if not path.exists() or path.stat().st_size == 0:
            return False
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as exc:
        raise StoreError(f"--store {path} cannot be read ({exc.strerror})") from None
    if len(head) < 100 or head[:16] != SQLITE_MAGIC:
        raise StoreError(f"--store {path} is not an SQLite file, so not an onchip-ff results store; {FIX}")
    app_id = int.from_bytes(head[68:72], "big")
    version = int.from_bytes(head[60:64], "big")
    if app_id != APPLICATION_ID:
        raise StoreError(f"--store {path} is an SQLite database of another program (application_id "
                         f"{app_id:#x}), not an onchip-ff results store; {FIX}")
    if version > SCHEMA_VERSION:
        raise StoreError(f"--store {path} has store schema {version}, newer than this onchip-ff's "
                         f"{SCHEMA_VERSION}; upgrade onchip-ff to read it")
    if version < 1:
        raise StoreError(f"--store {path} is a corrupt onchip-ff results store (schema version "
                         f"{version}); {FIX}")
    return True


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk), so the
    original error is the one reported."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    target = f"{path.resolve().as_uri()}?mode={mode}"
    conn = sqlite3.connect(target, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _verify(path: Path) -> None:
    """Tables, columns and page integrity, through a read-only connection (writes nothing to the
    file; SQLite may add empty -wal/-shm files beside it, removed again if the check fails)."""
    sidecars = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
    fresh = [p for p in sidecars if not p.exists()]
    conn = None
    try:
        conn = _connect(path, "ro")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        if not {"meta", "runs"} <= tables or set(COLUMN_NAMES) - columns:
            raise StoreError(f"--store {path} is marked as an onchip-ff store but lacks its tables or "
                             f"columns (corrupt); {FIX}")
        problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreError(f"--store {path} is corrupt ({problems[0]}); {FIX}")
    except sqlite3.DatabaseError as exc:
        _close_and_remove(conn, fresh)
        raise StoreError(f"--store {path} is corrupt or unreadable ({exc}); {FIX}") from None
    except StoreError:
        _close_and_remove(conn, fresh)
        raise
    conn.close()


def _close_and_remove(conn: sqlite3.Connection | None, fresh: list[Path]) -> None:
    if conn is not None:
        conn.close()
    for p in fresh:  # only what this check created, and only if empty
        if p.exists() and (p.name.endswith("-shm") or p.stat().st_size == 0):
            p.unlink(missing_ok=True)


class Store:
    """One connection to a results store; create=True makes a new store where there is none."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        exists = _header(self.path)
        if exists:
            _verify(self.path)
        elif readonly:
            raise StoreError(f"no results store at {self.path}; create one with "
                             f"`onchip-ff sweep SWEEP.toml --store {self.path}`")
        try:
            if not exists:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
            # readonly still opens read-write where it may: closing then tidies the -wal/-shm files
            self.conn = _connect(self.path, "rwc" if not readonly else "rw" if writable else "ro")
            if not readonly:
                self.conn.execute("PRAGMA synchronous = FULL")
                if not exists:
                    self._create()
                self._wal()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"--store {self.path} cannot be opened for writing ({exc})") from None
        except OSError as exc:
            raise StoreError(f"--store {self.path} cannot be created ({exc.strerror}); pass a path "
                             "in a folder you can write to") from None

    def _create(self) -> None:
        """Make the schema in one transaction unless it is there (another process may race us)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and tables == 0:  # rollback-journal mode here: the header hits the file
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                c.execute("CREATE TABLE runs (" + ", ".join(f"{n} {d}" for n, d in COLUMNS) + ")")
                c.execute("CREATE INDEX runs_status ON runs (status)")
                c.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("application", "onchip-ff"), ("schema", str(SCHEMA_VERSION)),
                    ("created", str(time.time()))])
            elif app_id != APPLICATION_ID:
                raise StoreError(f"--store {self.path} was just written by another program; {FIX}")
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise

    def _wal(self) -> None:
        for _ in range(50):  # switching needs a moment with no other connection reading
            try:
                if self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                    return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.1)  # rollback-journal mode still works, only with less concurrency

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, sweep: str, runs: list) -> int:
        """Insert runs (sweep.Run) not in the store yet, as pending; returns how many were new."""
        now = time.time()
        rows = [(r.key, sweep, r.position, json.dumps(list(r.overrides)), r.config_json, now) for r in runs]
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO runs (key, sweep, position, overrides, config, status, "
                          "created) VALUES (?, ?, ?, ?, ?, 'pending', ?)", rows)
            new = c.total_changes - before
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise
        return new

    def statuses(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT key, status FROM runs")}

    def claim(self, key: str, owner: str, retry_failed: bool = False) -> tuple[str | None, str]:
        """Atomically take run `key` for `owner`: (config JSON, "running") if taken, else
        (None, status) where status is done, failed, running (live elsewhere) or missing."""
        c = self.conn
        now = time.time()
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT status, owner, heartbeat, config FROM runs WHERE key = ?",
                            (key,)).fetchone()
            if row is None:
                c.execute("COMMIT")
                return None, "missing"
            status = row["status"]
            stale = status == "running" and (
                owner_alive(row["owner"]) is False
                or row["heartbeat"] is None or now - row["heartbeat"] > STALE_AFTER_S)
            if not (status == "pending" or stale or (status == "failed" and retry_failed)):
                c.execute("COMMIT")
                return None, status
            c.execute("UPDATE runs SET status = 'running', owner = ?, heartbeat = ?, started = ?, "
                      "finished = NULL, attempts = attempts + 1, error = NULL, detail = NULL "
                      "WHERE key = ?", (owner, now, now, key))
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise
        return row["config"], "running"

    def finish(self, key: str, owner: str, result: dict[str, Any], git_commit: str) -> bool:
        """Record a worker's result (worker.execute_run's dict) in one statement; False if the run
        is no longer ours (it went stale and another process took it: its result counts)."""
        m = result.get("metrics") or {}
        now = time.time()
        cur = self.conn.execute(
            "UPDATE runs SET status = ?, finished = ?, heartbeat = ?, test_accuracy = ?, "
            "train_accuracy = ?, epochs = ?, wall_s = ?, metrics = ?, error = ?, detail = ?, "
            "version = ?, git_commit = ? WHERE key = ? AND owner = ? AND status = 'running'",
            (result["status"], now, now, m.get("test_accuracy"), m.get("train_accuracy"),
             m.get("epochs"), m.get("wall_s"), json.dumps(m) if m else None, result.get("error"),
             result.get("detail"), result.get("version"), git_commit, key, owner))
        return cur.rowcount == 1

    def release_all(self, owner: str) -> int:
        """Put every run `owner` holds back to pending (after Ctrl-C); returns how many."""
        return self.conn.execute("UPDATE runs SET status = 'pending', owner = NULL, heartbeat = NULL, "
                                 "started = NULL WHERE owner = ? AND status = 'running'",
                                 (owner,)).rowcount

    def heartbeat(self, owner: str) -> None:
        self.conn.execute("UPDATE runs SET heartbeat = ? WHERE owner = ? AND status = 'running'",
                          (time.time(), owner))

    def rekey(self, current: Callable[[str], tuple[str, str] | None]) -> int:
        """Give rows the key the current code computes for their stored config: current(config)
        -> (key, config JSON) or None (not a train config, or no longer valid: row left alone).
        After a new config field with a behaviour-preserving default, stored runs get the keys
        new runs with the same settings get, so nothing is recomputed; a changed default keeps the
        old value that is written in the stored config, so the key still differs. Rows running in
        some process and rows whose new key is already taken are left alone. Returns how many."""
        keys = {r[0] for r in self.conn.execute("SELECT key FROM runs")}
        moves = []
        for key, text in self.conn.execute("SELECT key, config FROM runs WHERE status != 'running'"):
            new = current(text)
            if new is not None and new[0] != key and new[0] not in keys:
                keys.add(new[0])
                moves.append((new[0], new[1], key))
        if not moves:
            return 0
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            changed = sum(c.execute("UPDATE runs SET key = ?, config = ? WHERE key = ? AND status != "
                                    "'running'", m).rowcount for m in moves)
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise
        return changed

    def rows(self) -> list[dict[str, Any]]:
        """Every run as a dict of its columns, in sweep order."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY sweep, position, key")]
