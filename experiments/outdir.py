"""The output folder of a command: created on demand, refused when it already holds that command's
results (nothing is overwritten) or cannot be written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from common.errors import ConfigError

OUTPUT_FILES = ("metrics.json", "checkpoint.pt", "config.toml")  # of `onchip-ff train`


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
