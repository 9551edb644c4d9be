"""Per-epoch training checkpoints: written atomically, hash-checked, refused when they do not fit.

``OUT_DIR/checkpoints/epoch-NNN.pt`` holds the network, optimiser and scaler state, the epoch
counter, the best validation macro-F1 so far and the history; ``last.json`` (written last,
atomically) points at the newest complete one with its sha256. A run killed while writing
leaves ``last.json`` on the previous epoch. ``best.pt`` holds the network of the best epoch.

A resume is checked before any training starts: the pointer, the file's hash, that torch can
read it (``weights_only``), and that it was made for the same data, split and settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from burnscope.engines.model_folder import sha256_file

LAST = "last.json"
BEST = "best.pt"
KEEP = 2  # epoch files kept besides best.pt


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (corrupt, missing, or made for another run)."""


def _atomic_torch_save(payload: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save(folder: Path, epoch: int, payload: dict[str, Any], best_state: dict[str, Any] | None = None) -> Path:
    """Write ``epoch-NNN.pt`` (and ``best.pt`` when given), then point ``last.json`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch:03d}.pt"
    _atomic_torch_save(payload, path)
    if best_state is not None:
        _atomic_torch_save(best_state, folder / BEST)
    pointer = {"file": path.name, "epoch": epoch, "sha256": sha256_file(path), "bytes": path.stat().st_size,
               "run": payload.get("run", {})}
    tmp = folder / f".{LAST}.tmp"
    tmp.write_text(json.dumps(pointer, indent=1), encoding="utf-8")
    os.replace(tmp, folder / LAST)
    for old in sorted(folder.glob("epoch-*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def load(folder: Path, expected_run: dict[str, Any] | None = None, map_location: str = "cpu") -> dict[str, Any]:
    """The newest checkpoint, verified (see the module docstring); raises :class:`CheckpointError`."""
    import torch

    pointer_path = folder / LAST
    if not pointer_path.is_file():
        raise CheckpointError(f"--resume: no checkpoint in {folder} (a run writes one at the end of every epoch)")
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        path = folder / pointer["file"]
        digest, size = pointer["sha256"], int(pointer["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"--resume: {pointer_path} is corrupt (not a checkpoint pointer)") from None
    if not path.is_file():
        raise CheckpointError(f"--resume: checkpoint {path.name} is missing")
    if path.stat().st_size != size or sha256_file(path) != digest:
        raise CheckpointError(f"--resume: checkpoint {path.name} is corrupt (its sha256 does not match {LAST})")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"--resume: checkpoint {path.name} is corrupt ({type(exc).__name__})") from None
    missing = [k for k in ("epoch", "model", "optimizer", "run") if k not in payload]
    if missing:
        raise CheckpointError(f"--resume: checkpoint {path.name} lacks {', '.join(missing)}")
    if expected_run is not None:
        changed = sorted(k for k in expected_run if payload["run"].get(k) != expected_run[k])
        if changed:
            raise CheckpointError(
                f"--resume: checkpoint {path.name} was made with other {', '.join(changed)}; "
                "resume with the same data and settings, or start a new OUT_DIR"
            )
    return payload


def load_best(folder: Path, map_location: str = "cpu") -> dict[str, Any]:
    import torch

    try:
        return torch.load(folder / BEST, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{folder / BEST}: unreadable ({type(exc).__name__})") from None
