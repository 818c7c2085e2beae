"""Dagster resources: where the spec lives (the spec itself is read when an asset runs)."""

from __future__ import annotations

import dagster as dg

from pipeline.spec import Spec, load_spec


class SpacesResource(dg.ConfigurableResource):
    """The spaces.yaml a run works from. Holds a path only: no connection, no parsed state."""

    spec_path: str

    def load_spec(self) -> Spec:
        """Read and validate the spec now, so a run sees the file as it is at run time."""
        return load_spec(self.spec_path)
