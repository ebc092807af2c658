"""The output folder of a command: created on demand, refused when it already holds that command's
results (nothing is overwritten) or cannot be written; and the atomic writes every command's output
files go through (a full disk or a crash never leaves a half-written file)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common.errors import ConfigError

OUTPUT_FILES = ("metrics.json", "checkpoint.pt", "config.toml")  # of `onchip-ff train`


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any, indent: int = 2) -> None:
    """obj as indented JSON with a final newline, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure saved atomically (format from the suffix), then closed."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def run_status(path: Path) -> str | None:
    """The status metrics.json records for the train run in `path` ("running", "done",
    "interrupted", "failed"), "unknown" for an unreadable one, None without metrics.json."""
    metrics = path / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        return str(json.loads(metrics.read_text()).get("status", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unknown"


def prepare_out_dir(out: str | None, stem: str, names: tuple[str, ...] = OUTPUT_FILES) -> Path:
    """Create the output folder; refuse one that already holds results, or one we cannot write.
    A `train` folder whose run stopped ("interrupted" or "failed" in metrics.json, or only a
    config.toml) is reused: its files are replaced."""
    path = Path(out) if out else Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; pass a folder path")
    clash = [n for n in names if (path / n).exists()]
    status = run_status(path) if names == OUTPUT_FILES else None
    if names == OUTPUT_FILES and (status in ("interrupted", "failed") or clash == ["config.toml"]):
        clash = []  # a run that stopped: run it again here (or continue it with --resume)
    elif status == "running":
        raise ConfigError(f"--out {path} holds a run that did not finish (metrics.json: running; killed?); "
                          f"continue it with `onchip-ff train --resume {path}`, or pass a new --out folder")
    if clash:
        raise ConfigError(f"--out {path} already holds {', '.join(clash)}; nothing was overwritten. "
                          "Pass a new --out folder or remove the old results")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".onchip-ff-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {path} is not writable ({exc.strerror}); pass a folder you can "
                          "write to") from None
    return path
