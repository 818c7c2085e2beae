"""Query results kept on local disk and read back in slices: the keys of a table's changed
rows can outgrow memory (24 bytes a row: 1.4 GB at 60M rows), so they are streamed from the
warehouse into an Arrow IPC file and read back a batch at a time."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from pipeline.warehouse.connection import Connection

READ_ROWS = 65_536
"""Rows fetched from the warehouse (and written to the file) at once."""


PREFIX = "spilled_rows_"


class SpilledRows:
    """The rows of a query, in the query's order, in a temporary file in `folder` (the
    system's temporary folder if None) removed with this object (or `close`). Files that a
    killed process left in `folder` are removed when the next one is made."""

    def __init__(
        self, con: Connection, query: str, params: list | None = None, folder: Path | None = None
    ) -> None:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            _remove_orphans(folder)
        handle, self.path = tempfile.mkstemp(
            prefix=f"{PREFIX}{os.getpid()}_", suffix=".arrows", dir=folder
        )
        os.close(handle)
        self.num_rows = 0
        try:
            reader = con.execute(query, params or []).to_arrow_reader(READ_ROWS)
            self.schema = reader.schema
            with pa.OSFile(self.path, "wb") as sink, pa.ipc.new_stream(sink, self.schema) as out:
                for batch in reader:
                    out.write_batch(batch)
                    self.num_rows += batch.num_rows
        except BaseException:
            self.close()
            raise

    def slices(self, size: Callable[[], int]) -> Iterator[pa.Table]:
        """Consecutive slices of the rows; `size()` is asked before each slice for how many
        rows it holds (the last may hold fewer). Only one slice is held at a time."""
        if not self.num_rows:
            return
        with pa.OSFile(self.path, "rb") as source:
            batches = iter(pa.ipc.open_stream(source))
            held: list[pa.RecordBatch] = []
            count = 0
            wanted = max(1, size())
            for batch in batches:
                held.append(batch)
                count += batch.num_rows
                while count >= wanted:
                    table = pa.Table.from_batches(held, self.schema)
                    yield table.slice(0, wanted).combine_chunks()
                    rest = table.slice(wanted)
                    held, count = rest.to_batches(), rest.num_rows
                    wanted = max(1, size())
            if count:
                yield pa.Table.from_batches(held, self.schema).combine_chunks()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def __del__(self) -> None:
        if getattr(self, "path", None) and os is not None:
            self.close()


def _remove_orphans(folder: Path) -> None:
    """Remove the files of processes that are gone (a run killed with SIGKILL)."""
    for path in folder.glob(f"{PREFIX}*"):
        pid = path.name[len(PREFIX) :].split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
