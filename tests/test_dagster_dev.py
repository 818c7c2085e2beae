"""`dagster dev -w workspace.yaml` serves the generated graph (slow: starts the webserver)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, demo_spec_dict, write_spec

QUERY = "{ assetNodes { assetKey { path } } shouldShowNux }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium."""
    done = subprocess.run(
        [
            shutil.which("chromium") or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout


@pytest.mark.slow
def test_dagster_dev_shows_the_graph(tmp_path: Path):
    spec = tmp_path / "spaces.yaml"
    write_spec(spec, demo_spec_dict(tmp_path / "not_yet.duckdb", tmp_path / "artifacts"))
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # what `make setup` does
    env = {**os.environ, "SPACES_SPEC": str(spec), "DAGSTER_HOME": str(home)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)),
    )
    try:
        keys, deadline = None, time.time() + 180
        while time.time() < deadline and keys is None:
            time.sleep(2)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=json.dumps({"query": QUERY}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    data = json.load(response)["data"]
                    keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]} or None
            except (OSError, KeyError, TypeError):
                continue
        assert keys, "dagster dev did not answer in time"
        assert {
            "ml/customers_embeddings",
            "ml/customers__churned_predictions",
            "stg_customers",
            "marts/customer_churn_risk",
        } <= keys
        assert not (tmp_path / "not_yet.duckdb").exists()
        assert data["shouldShowNux"] is False  # no community dialog over the graph
        page = _rendered(f"http://127.0.0.1:{port}/asset-groups", tmp_path / "chrome")
        assert "Global asset lineage" in page and "dbt_marts" in page  # the graph, its groups
        # over it, a fresh instance without these settings shows this dialog (checked by hand)
        assert "Join the Dagster community" not in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
