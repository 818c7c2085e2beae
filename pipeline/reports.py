"""Plots and summaries of trained spaces: loss timeline, mutual information, 3-d sphere.

PNG bytes, so the CLI can write files and Dagster can inline them in markdown metadata.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from pipeline.spaces.objective import LOSS_PARTS
from pipeline.spec import Spec
from pipeline.store.artifacts import load_json
from pipeline.store.model_store import current_set
from pipeline.warehouse.connection import Warehouse


def _figure(width: float = 6, height: float = 3.5, projection: str | None = None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=(width, height), dpi=80)
    return figure, figure.add_subplot(projection=projection), plt


def _png(figure, plt) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def timeline_png(timeline: list[dict], title: str) -> bytes:
    """Loss components against optimizer steps."""
    figure, axes, plt = _figure()
    steps = [point["step"] for point in timeline]
    for name in LOSS_PARTS:
        if timeline and name in timeline[0]:
            axes.plot(steps, [point[name] for point in timeline], label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend(fontsize=7)
    return _png(figure, plt)


def mutual_information_png(bits: dict[str, float], title: str) -> bytes:
    """Bits each input shares with the rest of its row, largest first."""
    ordered = sorted(bits.items(), key=lambda item: item[1])
    figure, axes, plt = _figure(height=max(2.0, 0.3 * len(ordered) + 1))
    axes.barh([name for name, _ in ordered], [value for _, value in ordered], color="#4c72b0")
    axes.set_xlabel("bits")
    axes.set_title(title)
    return _png(figure, plt)


def sphere_png(points: np.ndarray, title: str) -> bytes:
    """The rows' `embedding_3d` on the unit sphere."""
    figure, axes, plt = _figure(4.5, 4.5, projection="3d")
    sample = points[np.random.default_rng(0).permutation(len(points))[:3000]]
    axes.scatter(sample[:, 0], sample[:, 1], sample[:, 2], s=2, alpha=0.5, c=sample[:, 2])
    axes.set_title(title)
    return _png(figure, plt)


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def space_report(spec: Spec, name: str, folder: Path) -> dict[str, Path]:
    """Write the plots and a summary of one trained and embedded space into `folder`."""
    model_set = current_set(Path(spec.artifacts) / name, f"space {name}")
    description = load_json(model_set / "space.json")
    training = description.get("training") or {}
    timeline_file = model_set / "timeline.json"
    timeline = load_json(timeline_file)["timeline"] if timeline_file.exists() else []
    with Warehouse.of(spec).connect(read_only=True) as con:
        rows = con.execute(
            f'select embedding_3d from "{spec.output_schema}"."{name}_embeddings"'
        ).fetchall()
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "timeline": timeline_png(timeline, f"{name}: training losses"),
        "mutual_information": mutual_information_png(
            training.get("mutual_information_bits", {}), f"{name}: mutual information"
        ),
        "sphere": sphere_png(np.array([r[0] for r in rows], np.float32), f"{name}: 3-d view"),
    }
    written = {}
    for key, png in files.items():
        written[key] = folder / f"{name}_{key}.png"
        written[key].write_bytes(png)
    written["summary"] = folder / f"{name}_summary.json"
    written["summary"].write_text(
        json.dumps(
            {"space": name, "version": description["version"], "rows": len(rows), **training},
            indent=2,
        )
    )
    return written
