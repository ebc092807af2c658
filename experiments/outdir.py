"""The output folder of a command: created on demand, refused when it already holds that command's
results (nothing is overwritten) or cannot be written."""

from __future__ import annotations

import time
from pathlib import Path

from common.errors import ConfigError

OUTPUT_FILES = ("metrics.json", "checkpoint.pt", "config.toml")  # of `onchip-ff train`


def prepare_out_dir(out: str | None, stem: str, names: tuple[str, ...] = OUTPUT_FILES) -> Path:
    """Create the output folder; refuse one that already holds results, or one we cannot write."""
    path = Path(out) if out else Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; pass a folder path")
    clash = [n for n in names if (path / n).exists()]
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
