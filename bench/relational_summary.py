"""One table per run of bench/relational.py: per task the aggregates, the chosen predictor,
both embedding probes against the PCA probes, `run` time against its limit, predict rows/s.

Usage: .venv/bin/python bench/relational_summary.py [bench/relational_results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOISE = {"auc": 0.005, "rmse": 0.01}
"""What counts as a win or a loss: 0.005 AUC, 1% RMSE."""


def _metric(result: dict) -> str:
    return "rmse" if "rmse" in result else "auc"


def _better(metric: str, a: float, b: float) -> float:
    """How far a is ahead of b (positive: a better); RMSE relative."""
    return (b - a) / b if metric == "rmse" else a - b


def _verdict(metric: str, ahead: float) -> str:
    if ahead > NOISE[metric]:
        return "win"
    return "loss" if ahead < -NOISE[metric] else "tie"


def rows(report: dict) -> list[str]:
    out = [
        "| task | aggregates | project (chosen) | result | kNN: embedding / PCA | LightGBM: "
        "embedding / PCA | `run` s / limit s | predict rows/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["tasks"].items():
        results = entry["results"]
        aggregates, project = results["sql_aggregates"], results.get("project", {})
        metric = _metric(aggregates)
        if "error" in project or metric not in project:
            out.append(f"| {name} | {aggregates[metric]:.4f} | error | | | | | |")
            continue
        runs = project.get("predictor_runs") or []
        chosen = (runs[-1].get("metrics") or {}).get("chosen") if runs else "?"
        ahead = _better(metric, project[metric], aggregates[metric])
        probes = []
        embedding, pca = project.get("embedding_probes") or {}, aggregates.get("pca_probes") or {}
        for probe in ("knn", "lightgbm"):
            if probe in embedding and probe in pca:
                e, p = embedding[probe][metric], pca[probe][metric]
                mark = "**" if _better(metric, e, p) > 0 else ""
                probes.append(f"{mark}{e:.4f}{mark} / {p:.4f}")
            else:
                probes.append("n/a")
        limit = project.get("limit_s")
        within = "" if project.get("within_limit") else " (over)"
        label = metric.upper() if metric == "auc" else "RMSE"
        out.append(
            f"| {name} | {label} {aggregates[metric]:.4f} | {project[metric]:.4f} ({chosen}) | "
            f"{_verdict(metric, ahead)} ({ahead:+.4f}{'' if metric == 'auc' else ' rel.'}) | "
            f"{probes[0]} | {probes[1]} | {project.get('wall_s')} / {limit}{within} | "
            f"{project.get('predict_rows_per_s', 'n/a')} |"
        )
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/relational_results.json")
    print("\n".join(rows(json.loads(path.read_text()))))
