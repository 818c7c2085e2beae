"""Model files as versioned sets: each save writes a new version folder (its files and a
manifest of their hashes), then one atomic replace of the `CURRENT` pointer makes it current.
A crash at any moment leaves the previous set current and whole; loading checks that the
files of the current set are the ones its manifest names. Older sets are kept for roll-back.

    artifacts/<space>/CURRENT                  -> "0003-1a2b3c4d5e6f"
    artifacts/<space>/versions/0003-1a2b3c4d5e6f/{space.json, space.safetensors, ...,
                                                  manifest.json}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.store.artifacts import atomic_write, sync_folder

POINTER = "CURRENT"
VERSIONS = "versions"
MANIFEST = "manifest.json"
LEGACY_FILES = ("space.json", "predictor.json")
"""What a model folder held directly before model sets."""
PARTIAL_AGE_S = 3600.0
"""A partial set older than this was left by an interrupted save and is removed."""
KEEP_VERSIONS = 3
"""Version sets kept per model (the current one included), unless the spec says otherwise."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _numbered(folder: Path) -> list[Path]:
    """Complete version folders, oldest first."""
    root = folder / VERSIONS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name[:4].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[0]))


def write_set(
    folder: Path,
    files: dict[str, bytes | Callable[[Path], None]],
    version: str,
    keep: int = KEEP_VERSIONS,
) -> Path:
    """Write `files` as a new version set of the model in `folder` and make it current.
    A file is its bytes, or a function that writes it to the path it is given (a large
    file, such as a neighbour index, written without a copy in memory). Returns the set's
    folder."""
    root = folder / VERSIONS
    root.mkdir(parents=True, exist_ok=True)
    existing = _numbered(folder)
    number = int(existing[-1].name.split("-")[0]) + 1 if existing else 1
    name = f"{number:04d}-{version}"
    partial = root / f".partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        digests = {}
        for file_name, data in files.items():
            if callable(data):
                data(partial / file_name)
                _fsync(partial / file_name)
                digests[file_name] = _file_digest(partial / file_name)
            else:
                _fsync_write(partial / file_name, data)
                digests[file_name] = _digest(data)
        manifest = {"version": version, "files": digests}
        _fsync_write(partial / MANIFEST, json.dumps(manifest, indent=2).encode())
        os.replace(partial, root / name)
        sync_folder(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    atomic_write(folder / POINTER, name.encode())
    _prune(folder, keep)
    return root / name


def _prune(folder: Path, keep: int) -> None:
    """Remove sets beyond the newest `keep` (never the current one) and leftovers of
    interrupted saves."""
    current = current_name(folder)
    for old in _numbered(folder)[: -max(keep, 1)]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in (folder / VERSIONS).glob(".partial-*"):
        if time.time() - leftover.stat().st_mtime > PARTIAL_AGE_S:  # not a save under way
            shutil.rmtree(leftover, ignore_errors=True)


def current_name(folder: Path) -> str | None:
    pointer = folder / POINTER
    return pointer.read_text().strip() if pointer.exists() else None


def current_set(folder: Path, what: str, check: bool = True) -> Path:
    """The folder of the current set, after checking every file against its manifest
    (`check=False`: only that the manifest is there, for a large file read in part, such as
    a neighbour index that a query memory-maps). `what` names the model in messages (e.g.
    "space orders")."""
    name = current_name(folder)
    if name is None:
        if any((folder / f).exists() for f in LEGACY_FILES):
            return folder  # saved before model sets: read as it is, replaced at the next save
        raise PipelineError(
            f"{what}: no trained model in {folder} -> train it first: python -m pipeline train "
            "(or python -m pipeline run)"
        )
    return checked(folder / VERSIONS / name, what, check)


def checked(path: Path, what: str, check: bool = True) -> Path:
    """`path` if it is a whole set: every file its manifest names, with the same hash
    (`check=False`: with its manifest)."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise PipelineError(
            f"{what}: the model set {path} is missing or incomplete -> retrain it, or roll "
            f"back to an earlier set (python -m pipeline rollback)"
        )
    if not check:
        return path
    manifest = json.loads(manifest_path.read_text())
    for file_name, digest in manifest["files"].items():
        file = path / file_name
        if not file.exists() or _file_digest(file) != digest:
            raise PipelineError(
                f"{what}: {file} does not match the manifest of its model set (changed or "
                f"damaged after it was saved) -> retrain it, or roll back to an earlier set "
                f"(python -m pipeline rollback)"
            )
    return path


def versions(folder: Path) -> list[str]:
    """Names of the kept sets, oldest first."""
    return [p.name for p in _numbered(folder)]


def roll_back(folder: Path, what: str) -> str:
    """Make the set before the current one current again; returns its name."""
    names = versions(folder)
    current = current_name(folder)
    if current not in names or names.index(current) == 0:
        raise PipelineError(f"{what}: no earlier model set to roll back to in {folder}")
    previous = names[names.index(current) - 1]
    checked(folder / VERSIONS / previous, what)
    atomic_write(folder / POINTER, previous.encode())
    return previous
