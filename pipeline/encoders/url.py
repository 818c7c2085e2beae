"""URLs: scheme, registrable domain (label + MiniLM embedding of domain and path words), path
depth and query size."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import ColumnType, label
from pipeline.encoders.domain import DomainCodec, HostEncoder, registrable_domain

SCHEMES = ("http", "https", "ftp", "other")


def url_parts(value: object) -> tuple[str, str, str, str] | None:
    """(scheme, registrable domain, path, query) or None when it is not a URL."""
    text = label(value)
    if text is None:
        return None
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
    except ValueError:
        return None
    domain = registrable_domain(parts.hostname)
    if domain is None:
        return None
    scheme = parts.scheme.lower() if parts.scheme.lower() in SCHEMES else "other"
    return scheme, domain, parts.path, parts.query


class UrlCodec(DomainCodec):
    type = "url"
    n_features = 3

    @staticmethod
    def domain(value: object) -> str | None:
        parts = url_parts(value)
        return parts[1] if parts else None

    def texts(self, values: list) -> list[str | None]:
        """Domain and path words (`shop.example.com/shoes/red-boots` -> `example.com shoes red
        boots`), the part of a URL that carries meaning."""
        texts = []
        for value in values:
            parts = url_parts(value)
            if parts is None:
                texts.append(None)
                continue
            words = re.findall(r"[A-Za-z]{2,}", parts[2])
            texts.append(" ".join([parts[1], *words[:16]]))
        return texts

    def transform(self, values: list) -> dict[str, np.ndarray]:
        parsed = [url_parts(v) for v in values]
        arrays = self.host_arrays([p[1] if p else None for p in parsed])
        scheme = np.array([SCHEMES.index(p[0]) if p else 0 for p in parsed], dtype=np.int64)
        features = np.array(
            [
                (
                    math.log1p(len([s for s in p[2].split("/") if s])),
                    float(bool(p[3])),
                    math.log1p(len(parse_qsl(p[3]))),
                )
                if p
                else (0.0, 0.0, 0.0)
                for p in parsed
            ],
            dtype=np.float32,
        ).reshape(len(parsed), self.n_features)
        return {**arrays, "scheme": scheme, "features": features}


class UrlEncoder(nn.Module):
    def __init__(self, n_classes: int, n_tlds: int, n_features: int, d_model: int) -> None:
        super().__init__()
        self.host = HostEncoder(n_classes, n_tlds, d_model)
        self.scheme = nn.Embedding(len(SCHEMES), d_model)
        self.shape = nn.Linear(n_features, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.host(batch) + self.scheme(batch["scheme"]) + self.shape(batch["features"])


COLUMN_TYPE = ColumnType(
    name="url",
    codec=UrlCodec,
    encoder=lambda sizes, d_model: UrlEncoder(
        sizes["n_classes"], sizes["n_tlds"], UrlCodec.n_features, d_model
    ),
    looks_like=r"regexp_matches(lower({value}), '^(https?|ftp)://[^\s/$.?#][^\s]*$') "
    r"or regexp_matches(lower({value}), '^www\.[^\s]+\.[a-z]{2,}(/[^\s]*)?$')",
    priority=50,
)
