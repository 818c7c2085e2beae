"""The Dagster code location: `dagster dev -w workspace.yaml` or `-m assets.definitions`.

The spec is the file named by `SPACES_SPEC` (default `spaces.yaml`; a relative path is taken
from the repository root).
"""

from __future__ import annotations

import os
from pathlib import Path

from assets.factory import build_definitions

REPO_ROOT = Path(__file__).resolve().parent.parent


def spec_path_from_env() -> Path:
    """The spec file named by SPACES_SPEC; a clear error when it does not exist."""
    path = Path(os.environ.get("SPACES_SPEC", "spaces.yaml")).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(
            f"spec file {path} not found -> set the SPACES_SPEC environment variable to your "
            f"spaces.yaml (a relative path is resolved against {REPO_ROOT})"
        )
    return path


defs = build_definitions(spec_path_from_env())
