"""The space model: typed encoders -> [CLS] + column tokens -> transformer -> row embedding.

Shape contract (as in pytorch-frame): encoders give [batch, n_tokens, d_model], the
transformer keeps that shape, the head turns the [CLS] token into an L2-normalised embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.encoders import build_encoder
from pipeline.encoders.sets import ChildSetEncoder, ChildStatisticsEncoder, ReferenceEncoder
from pipeline.encoders.text_vectors import TEXT_DIM
from pipeline.errors import PipelineError
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.last_layer import first_position
from pipeline.spaces.principal import (
    LEARNED_WEIGHT,
    N_QUANTILES,
    PRINCIPAL_WEIGHT,
    PrincipalAxes,
    gaussianised,
    token_features,
)

VALUED, NULL, MASKED = 0, 1, 2


@dataclass(frozen=True)
class TokenSpec:
    """One token of a row: an input column, a child set or a reference."""

    name: str
    kind: str
    type: str
    n_features: int = 0
    n_classes: int = 0
    dim: int = 0
    max_length: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    """What the column encoder is built from (from the codec)."""

    @property
    def contrastive(self) -> bool:
        """Reconstructed by contrast with the batch (text, sets, references), not as a class."""
        return self.n_classes == 0

    @property
    def output_dim(self) -> int:
        """Decoder width: classes, or the dimension of the fixed target vector."""
        if self.n_classes:
            return self.n_classes
        return self.dim or TEXT_DIM


def token_specs(inputs: SpaceInputs) -> list[TokenSpec]:
    specs = [
        TokenSpec(
            c.name,
            "column",
            c.codec.type,
            c.codec.n_features,
            c.codec.n_classes,
            dim=c.codec.target_dim,
            sizes=c.codec.sizes(),
        )
        for c in inputs.columns
    ]
    taken = {s.name for s in specs}
    for child in inputs.children:
        name = child.space if child.space not in taken else f"{child.space}__children"
        specs.append(
            TokenSpec(name, "children", "children", dim=child.dim, max_length=child.max_length)
        )
        taken.add(name)
    for child, indices in inputs.statistics_groups():
        name = f"{child}/statistics"
        specs.append(
            TokenSpec(name, "statistics", "statistics", n_features=len(indices), dim=len(indices))
        )
        taken.add(name)
    for ref in inputs.references:
        name = ref.space if ref.space not in taken else f"{ref.space}__reference"
        specs.append(TokenSpec(name, "reference", "reference", dim=ref.dim))
        taken.add(name)
    return specs


def gather(
    inputs: SpaceInputs,
    rows: torch.Tensor,
    child_limit: int | None = None,
    generator: torch.Generator | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The batch of `rows` for every token, in token_specs order; each has a `present` mask.

    With `child_limit` (training), a row with more children keeps a random `child_limit` of
    them, in their order and with their positions: an update costs what a short set costs,
    and the set's token learns from every subset of it over the run."""
    if not inputs.tokens:
        raise PipelineError(
            f"space {inputs.space}: these inputs were read without the model's tokens (for a "
            "predictor beside the stored embedding): the space model cannot run on them"
        )
    batch = []
    for column in inputs.columns:
        part = {k: v[rows] for k, v in column.arrays.items() if k != "text_row"}
        if column.text_vectors is not None:
            part["text"] = column.text_vectors[column.arrays["text_row"][rows]]
            part.setdefault("target_vector", part["text"])
        batch.append(part)
    for child in inputs.children:
        start = child.offsets[rows]
        lengths = child.offsets[rows + 1] - start
        longest = max(int(lengths.max()) if len(rows) else 0, 1)
        steps = torch.arange(longest)
        if child_limit is not None and longest > child_limit:
            draw = torch.rand(len(rows), longest, generator=generator)
            draw = draw.masked_fill(steps[None, :] >= lengths[:, None], 2.0)  # absent: last
            positions = draw.argsort(dim=1)[:, :child_limit].sort(dim=1).values
        else:
            positions = steps[None, :].expand(len(rows), -1)
        visible = positions < lengths[:, None]
        index = (start[:, None] + positions).clamp(max=max(len(child.embeddings) - 1, 0))
        if len(child.embeddings):
            children = child.embeddings[index] * visible.unsqueeze(-1)
        else:
            children = torch.zeros(len(rows), positions.shape[1], child.dim)
        batch.append(
            {
                "children": children,
                "visible": visible,
                "positions": positions.clamp(max=child.max_length - 1),
                "count": child.counts[rows],
                "present": lengths > 0,
                "target_vector": children.sum(1) / visible.sum(1).clamp(min=1).unsqueeze(-1),
            }
        )
    for _, indices in inputs.statistics_groups():
        columns = torch.from_numpy(indices)
        features = inputs.statistics_arrays["features"][rows][:, columns]
        batch.append(
            {
                "features": features,
                "defined": inputs.statistics_arrays["defined"][rows][:, columns],
                "present": torch.ones(len(rows), dtype=torch.bool),
                "target_vector": features,
            }
        )
    for ref in inputs.references:
        vector = ref.embeddings[rows]
        batch.append({"vector": vector, "present": ref.present[rows], "target_vector": vector})
    return batch


class SpaceModel(nn.Module):
    """Encoders, transformer and heads of one embedding space."""

    def __init__(
        self,
        tokens: list[TokenSpec],
        d_model: int,
        embedding_dim: int,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        principal_axes: int = 0,
        flat_dims: list[int] | None = None,
    ) -> None:
        """`principal_axes` > 0: the embedding's first `principal_axes + 1` coordinates are
        its principal part (see `pipeline.spaces.principal`; `set_principal` fills them in), the
        rest the transformer's; `flat_dims`: flat inputs per token."""
        super().__init__()
        self.tokens = tokens
        self.config = dict(
            d_model=d_model,
            embedding_dim=embedding_dim,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            principal_axes=principal_axes,
            flat_dims=list(flat_dims or []),
        )
        self.principal_axes = principal_axes
        learned_dim = embedding_dim - (principal_axes + 1 if principal_axes else 0)
        if principal_axes:
            dims = list(flat_dims or [])
            n_flat = sum(dims)
            self.register_buffer("flat_quantiles", torch.zeros(n_flat, N_QUANTILES))
            self.register_buffer("flat_mean", torch.zeros(n_flat))
            self.register_buffer("flat_std", torch.ones(n_flat))
            self.register_buffer("axes", torch.zeros(n_flat, principal_axes))
            self.register_buffer("axes_scale", torch.ones(1))
            self.register_buffer(
                "flat_token", torch.repeat_interleave(torch.arange(len(dims)), torch.tensor(dims))
            )
        self.encoders = nn.ModuleList(self._encoder(t, d_model, n_heads) for t in tokens)
        self.identity = nn.Parameter(torch.randn(len(tokens), d_model) * 0.02)
        self.state = nn.Embedding(3, d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
            nn.Linear(d_model, learned_dim),
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(
                nn.Linear(embedding_dim, d_model),
                nn.GELU(),
                nn.Linear(d_model, t.output_dim),
            )
            for t in tokens
        )

    @staticmethod
    def _encoder(token: TokenSpec, d_model: int, n_heads: int) -> nn.Module:
        if token.kind == "children":
            return ChildSetEncoder(token.dim, d_model, token.max_length, n_heads=n_heads)
        if token.kind == "reference":
            return ReferenceEncoder(token.dim, d_model)
        if token.kind == "statistics":
            return ChildStatisticsEncoder(token.n_features, d_model)
        sizes = token.sizes or {"n_features": token.n_features, "n_classes": token.n_classes}
        return build_encoder(token.type, sizes, d_model)

    def set_principal(self, fitted: PrincipalAxes) -> None:
        """Fill in the fitted standardisation and axes (`pipeline.spaces.principal.fit_axes`)."""
        self.flat_quantiles.copy_(torch.from_numpy(fitted.quantiles))
        self.flat_mean.copy_(torch.from_numpy(fitted.mean))
        self.flat_std.copy_(torch.from_numpy(fitted.std))
        self.axes.copy_(torch.from_numpy(fitted.axes))
        self.axes_scale.fill_(fitted.scale)

    def flat_inputs(self, batch: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Every token's flat inputs side by side [B, F] (`pipeline.spaces.principal`)."""
        return torch.cat(
            [
                token_features(t.kind, t.type, t.n_classes, part)
                for t, part in zip(self.tokens, batch, strict=True)
            ],
            1,
        )

    def encode_tokens(
        self, batch: list[dict[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Token contents [B, T, d], presence [B, T] and flat inputs [B, F] (None without a
        principal part)."""
        content = torch.stack(
            [enc(part) for enc, part in zip(self.encoders, batch, strict=True)], 1
        )
        present = torch.stack([part["present"] for part in batch], dim=1)
        flat = self.flat_inputs(batch) if self.principal_axes else None
        return content, present, flat

    def standardized(self, flat: torch.Tensor) -> torch.Tensor:
        """The flat inputs [B, F] rank-gaussianised and standardized (weights applied)."""
        return (gaussianised(flat, self.flat_quantiles) - self.flat_mean) / self.flat_std

    def principal(self, flat: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """The principal part [B, principal_axes + 1], L2-normalised: the constant
        coordinate, then the standardized flat inputs on the axes (a hidden token's inputs
        read as the average row's)."""
        z = self.standardized(flat)
        if hidden is not None:
            z = z * (~hidden)[:, self.flat_token]
        return self._on_sphere(z @ self.axes)

    def _on_sphere(self, coordinates: torch.Tensor) -> torch.Tensor:
        """Coordinates on the axes [B, k] -> the principal part [B, k + 1]: the constant
        coordinate in front, L2-normalised."""
        constant = self.axes_scale.expand(len(coordinates), 1)
        return F.normalize(torch.cat([constant, coordinates], 1), dim=-1)

    def seen_by_principal_part(self) -> list[bool]:
        """Per token: whether its content reaches the principal part (more flat inputs than
        its presence flag). A text token's content reaches only the learned part."""
        counts = torch.bincount(self.flat_token, minlength=len(self.tokens))
        return (counts > 1).tolist()

    def masking_base(
        self, flat: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What `principal_masked_view` needs for rows with flat inputs [B, F] and stored
        `embeddings` [B, embedding_dim]: their standardized inputs, their coordinates on the
        axes, and the learned part of their embedding."""
        z = self.standardized(flat)
        return z, z @ self.axes, embeddings[:, self.principal_axes + 1 :]

    def principal_masked_view(
        self, base: tuple[torch.Tensor, torch.Tensor, torch.Tensor], token: int
    ) -> torch.Tensor:
        """The rows' embeddings [B, embedding_dim] with `token`'s inputs hidden from the
        principal part (they read as the average row's: the token's axes subtracted), the
        learned part kept whole: no transformer pass (importance by masking at scale). Only
        for tokens `seen_by_principal_part`; needs a principal part."""
        z, coordinates, learned = base
        own = self.flat_token == token
        principal = self._on_sphere(coordinates - z[:, own] @ self.axes[own])
        return torch.cat([PRINCIPAL_WEIGHT * principal, learned], 1)

    def embed_tokens(
        self,
        content: torch.Tensor,
        present: torch.Tensor,
        hidden: torch.Tensor | None = None,
        flat: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Row embeddings [B, embedding_dim] (L2-normalised). `hidden` tokens are left out of
        the sequence: the row's other tokens are moved to the front and the transformer runs
        over as many positions as the row with the most of them keeps (a masked half of a row
        costs half a row). With a principal part, `flat` [B, F] is needed."""
        learned = self._learned(content, present, hidden)
        if not self.principal_axes:
            return learned
        assert flat is not None, "a space with a principal part needs its flat inputs"
        return torch.cat(
            [PRINCIPAL_WEIGHT * self.principal(flat, hidden), LEARNED_WEIGHT * learned], 1
        )

    def _learned(
        self, content: torch.Tensor, present: torch.Tensor, hidden: torch.Tensor | None
    ) -> torch.Tensor:
        state = torch.where(present, VALUED, NULL)
        tokens = content * present.unsqueeze(-1) + self.state(state) + self.identity[None]
        padding = None
        if hidden is not None and bool(hidden.any()):
            kept = ~hidden
            width = int(kept.sum(1).max())
            order = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)[:, :width]
            tokens = tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
            padding = ~kept.gather(1, order)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        if padding is not None and bool(padding.any()):
            padding = torch.cat([torch.zeros(len(tokens), 1, dtype=torch.bool), padding], dim=1)
        else:
            padding = None
        return F.normalize(self.head(self._encoded_cls(tokens, padding)), dim=-1)

    def _encoded_cls(self, tokens: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """The transformer's output at the [CLS] position [B, d]: every layer but the last
        over all positions, the last for [CLS] alone (its keys and values still read every
        position). Nothing else of the last layer reaches the embedding, so this is the
        whole transformer's [CLS] output at about 60% of its cost."""
        layers = self.transformer.layers
        for layer in layers[:-1]:
            tokens = layer(tokens, src_key_padding_mask=padding)
        return first_position(layers[-1], tokens, padding)

    def forward(
        self, batch: list[dict[str, torch.Tensor]], hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        content, present, flat = self.encode_tokens(batch)
        return self.embed_tokens(content, present, hidden, flat)

    def description(self) -> dict:
        return {"config": self.config, "tokens": [asdict(t) for t in self.tokens]}

    @classmethod
    def from_description(cls, description: dict) -> SpaceModel:
        tokens = [TokenSpec(**t) for t in description["tokens"]]
        return cls(tokens, **description["config"])
