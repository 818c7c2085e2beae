"""Model files without pickle: weights as safetensors, everything else as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(module: torch.nn.Module, path: Path) -> str:
    """Save a module's weights atomically; returns a short content hash (the version)."""
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_suffix(".tmp.safetensors")
    save_file(state, str(tmp))
    data = tmp.read_bytes()
    tmp.unlink()
    _atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()[:12]


def load_weights(module: torch.nn.Module, path: Path) -> None:
    module.load_state_dict(load_file(str(path)))


def save_json(data: dict, path: Path) -> None:
    _atomic_write(path, json.dumps(data, indent=2, default=float).encode())


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
