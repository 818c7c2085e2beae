"""Nearest rows of a space by the cosine similarity of their embeddings, from an index
(faiss): every row's k nearest other rows, found in batches for the `ml.<space>_neighbours`
table, and the nearest rows of any vector for `search`.

Up to EXACT_UP_TO rows the index is exact (inner products with every row). Above, it is an
inverted file: the rows are grouped around 4 sqrt(n) centres (k-means on a seeded sample)
and a query compares itself with the rows of its PROBES nearest groups only. Both are
deterministic: the same embeddings and seed give the same neighbours. A row's label in the
index is its id: rows are added with ids 0, 1, ... when the index is built, and a row
embedded again later is removed and added back under the next free id
(`pipeline.spaces.neighbour_upkeep`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

EXACT_UP_TO = 50_000
"""Rows up to which every query is compared with every row."""
LISTS_PER_SQRT_ROW = 4
TRAINING_ROWS_PER_LIST = 40
KMEANS_ITERATIONS = 10
PROBES = 32
BATCH_ROWS = 8192
INDEX_FILE = "index.faiss"


def _unit(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass
class NeighbourIndex:
    """The rows' unit embeddings in a faiss index, each labelled with its row id."""

    index: faiss.Index

    @property
    def n_rows(self) -> int:
        return int(self.index.ntotal)

    @property
    def exact(self) -> bool:
        return not isinstance(self.index, faiss.IndexIVF)

    @staticmethod
    def lists(n_rows: int) -> int:
        """Groups of an inverted file over `n_rows` rows."""
        return int(LISTS_PER_SQRT_ROW * np.sqrt(n_rows))

    @staticmethod
    def training_rows(n_rows: int) -> int:
        """Rows the inverted file's centres are fitted on."""
        return min(n_rows, TRAINING_ROWS_PER_LIST * NeighbourIndex.lists(n_rows))

    @classmethod
    def empty(cls, dim: int, n_rows: int, sample: np.ndarray | None, seed: int) -> NeighbourIndex:
        """An index for `n_rows` rows of width `dim`: exact up to EXACT_UP_TO rows, else an
        inverted file whose centres are fitted on `sample` (`training_rows` of them)."""
        if n_rows <= EXACT_UP_TO or sample is None:  # an id map: rows can be removed
            return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        lists = cls.lists(n_rows)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.niter = KMEANS_ITERATIONS
        index.train(_unit(sample))
        index.nprobe = PROBES
        return cls(index)

    @classmethod
    def build(cls, embeddings: np.ndarray, seed: int) -> NeighbourIndex:
        """Index `embeddings` [n, d] (normalised here: similarity is cosine)."""
        n = len(embeddings)
        sample = None
        if n > EXACT_UP_TO:
            step = max(1, n // cls.training_rows(n))
            sample = embeddings[::step]
        index = cls.empty(embeddings.shape[1], n, sample, seed)
        for start in range(0, n, BATCH_ROWS):
            index.add(embeddings[start : start + BATCH_ROWS])
        return index

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Add rows (normalised here) under `ids`; by default the next ids of a new index
        (0, 1, ... in the order rows are added)."""
        if ids is None:
            ids = np.arange(self.n_rows, self.n_rows + len(vectors), dtype=np.int64)
        self.index.add_with_ids(_unit(vectors), np.ascontiguousarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        """Remove the rows with these ids (ids not in the index are ignored)."""
        if not self.exact and self.index.direct_map.type:
            self.index.set_direct_map_type(faiss.DirectMap.NoMap)  # an array map cannot remove
        self.index.remove_ids(np.ascontiguousarray(ids, np.int64))

    def vectors(self, start: int, count: int) -> np.ndarray:
        """The indexed (unit) vectors of ids start .. start + count - 1 (of an index as
        built: no row removed)."""
        if not self.exact and not self.index.direct_map.type:
            self.index.make_direct_map()
        return self.index.reconstruct_n(start, count)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows), each [n, k], nearest first; row -1 where fewer than k rows
        were found."""
        k = max(0, min(k, self.n_rows))
        if k == 0 or len(vectors) == 0:
            return np.zeros((len(vectors), k), np.float32), np.zeros((len(vectors), k), np.int64)
        return self.index.search(_unit(vectors), k)

    def every_row(self, k: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each batch of the indexed rows (of an index as built: ids 0 .. n - 1): (rows,
        similarities, neighbour rows), the neighbours [batch, k'] of each row without the
        row itself (k' = min(k, n - 1)), nearest first (`nearest_others`)."""
        for start in range(0, self.n_rows, BATCH_ROWS):
            batch = self.vectors(start, min(BATCH_ROWS, self.n_rows - start))
            rows = np.arange(start, start + len(batch))
            yield rows, *self.nearest_others(batch, rows, k)

    def nearest_others(
        self, vectors: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, neighbour rows) [n, k'] of indexed rows `rows` with these `vectors`:
        their k' = min(k, n_rows - 1) nearest rows other than themselves, nearest first. A
        row that the search did not return among its own nearest (a duplicate ranked first,
        or a miss of the inverted file) loses its last neighbour."""
        k = max(0, min(k, self.n_rows - 1))
        similarities, found = self.search(vectors, k + 1)
        own = found == rows[:, None]
        keep = ~own
        keep[~own.any(axis=1), -1] = False  # one entry too many where self is absent
        n = len(vectors)
        return similarities[keep].reshape(n, k), found[keep].reshape(n, k)

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, folder: Path, writable: bool = False) -> NeighbourIndex:
        """The saved index, memory-mapped where faiss can (an inverted file's lists): a
        query reads only the pages it needs. `writable`: read whole, to add and remove rows."""
        path = str(folder / INDEX_FILE)
        try:
            index = faiss.read_index(path, 0 if writable else faiss.IO_FLAG_MMAP)
        except RuntimeError:
            index = faiss.read_index(path)
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = PROBES
        return cls(index)
