"""Model files without pickle: weights as safetensors, everything else as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash of the machine keeps it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def weights_bytes(module: torch.nn.Module) -> bytes:
    """A module's weights as safetensors bytes."""
    return save({k: v.detach().contiguous() for k, v in module.state_dict().items()})


def short_hash(data: bytes) -> str:
    """The 12-character content hash used as a model version."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_weights(module: torch.nn.Module, path: Path) -> None:
    module.load_state_dict(load_file(str(path)))


def json_bytes(data: dict) -> bytes:
    return json.dumps(data, indent=2, default=float).encode()


def save_json(data: dict, path: Path) -> None:
    atomic_write(path, json_bytes(data))


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
