"""The data-quality report page opens anywhere: one self-contained file (no script, no style
or font from the internet), every space's checks as rows, checked in a real headless
Chromium with the network cut off."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from pipeline import runner
from pipeline.understanding.quality_page import page_path
from tests.conftest import demo_spec_dict, write_spec


class _Rows(HTMLParser):
    """Rows of each space's section: {space: [[cell, ...], ...]}, and any external source."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self._space: str | None = None
        self._row: list[str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name, "").startswith(("http:", "https:", "//")):
                self.external.append(found[name])
        if tag in ("script", "link", "iframe", "img"):
            self.external.append(tag)
        if tag == "section":
            self._space = found["id"].removeprefix("space-")
            self.rows[self._space] = []
        elif tag == "tr" and self._space:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows[self._space].append(self._row)
            self._row = None
        elif tag == "section":
            self._space = None


def _parse(text: str) -> _Rows:
    parser = _Rows()
    parser.feed(text)
    return parser


@pytest.fixture
def checked(small_demo: Path, tmp_path: Path):
    """Every space validated (its suite learned), then customers drifted and checked again."""
    spec = write_spec(tmp_path / "s.yaml", demo_spec_dict(small_demo, tmp_path / "artifacts"))
    runner.validate(spec)
    con = duckdb.connect(str(small_demo))
    con.execute("update raw.customers set plan = 'platinum' where customer_id % 5 = 0")
    con.close()
    runner.validate(spec)
    return spec


def test_the_page_holds_every_space_and_nothing_from_outside(checked) -> None:
    page = page_path(checked)
    parsed = _parse(page.read_text())
    assert parsed.external == []
    assert set(parsed.rows) == set(checked.spaces)
    for space, rows in parsed.rows.items():
        statuses = {row[0] for row in rows}
        assert statuses & {"passed", "failed"}, f"{space}: no validated expectation"
    failed = [row for row in parsed.rows["customers"] if row[0] == "failed"]
    assert any(row[1] == "expect_column_values_to_be_in_set" and row[2] == "plan" for row in failed)


@pytest.mark.slow
def test_the_page_opens_offline_in_headless_chromium(checked, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed: apt-get install chromium (.ci/run installs it)"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",  # every network request fails
            "--proxy-bypass-list=<-loopback>",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page_path(checked).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rendered = _parse(result.stdout)
    assert set(rendered.rows) == set(checked.spaces)
    for space, rows in rendered.rows.items():
        assert any(row[0] in ("passed", "failed") for row in rows), space
    assert any(row[0] == "failed" for row in rendered.rows["customers"])
