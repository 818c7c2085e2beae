"""The principal part of the embedding (`pipeline/spaces/principal.py`): quantile transform, axes,
and a masked view that cannot see its hidden tokens through the principal part."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.spaces.model import SpaceModel, TokenSpec
from pipeline.spaces.principal import (
    FIT_ROWS,
    fit_axes,
    gaussianised,
    token_features,
    token_weights,
)


def test_gaussianised_is_a_monotone_normal_score_and_ties_share_one() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.lognormal(0, 2, 5000), rng.integers(0, 2, 5000)]).astype(np.float32)
    quantiles = np.ascontiguousarray(np.quantile(x, np.linspace(0, 1, 129), axis=0).T)
    g = gaussianised(torch.from_numpy(x), torch.from_numpy(quantiles.astype(np.float32))).numpy()
    order = np.argsort(x[:, 0])
    assert np.all(np.diff(g[order, 0]) >= -1e-6)  # monotone
    assert abs(g[:, 0].mean()) < 0.05 and abs(g[:, 0].std() - 1) < 0.1  # heavy tail tamed
    assert len(np.unique(g[:, 1])) == 2  # a binary input keeps two values
    assert g[x[:, 1] == 0, 1][0] < 0 < g[x[:, 1] == 1, 1][0]


def test_axes_are_orthonormal_and_repeatable() -> None:
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(800, 3))
    flat = np.column_stack([latent @ rng.normal(size=(3, 10)), rng.normal(size=(800, 4))])
    first = fit_axes(flat, [10, 4], embedding_dim=64)
    again = fit_axes(flat, [10, 4], embedding_dim=64)
    assert first is not None and first.n_axes == 14
    np.testing.assert_allclose(first.axes.T @ first.axes, np.eye(14), atol=1e-8)
    np.testing.assert_array_equal(first.axes, again.axes)
    assert fit_axes(flat[:2], [10, 4], embedding_dim=64) is None  # too few rows
    assert fit_axes(flat, [10, 4], embedding_dim=16) is None  # no room beside the learned part
    assert FIT_ROWS >= 10_000


def test_another_spaces_embedding_weighs_a_fixed_number_of_inputs() -> None:
    weights = token_weights("children", 66)  # 64 coordinates, the count, the presence
    assert np.isclose((weights[:64] ** 2).sum(), 16.0) and np.all(weights[64:] == 1)
    assert np.all(token_weights("statistics", 30) == 1)


def test_masked_view_cannot_read_a_hidden_token_through_the_principal_part() -> None:
    tokens = [
        TokenSpec("a", "statistics", "statistics", n_features=3, dim=3),
        TokenSpec("b", "statistics", "statistics", n_features=2, dim=2),
    ]
    rng = np.random.default_rng(2)

    def batch(b_values: np.ndarray) -> list[dict]:
        n = len(b_values)
        parts = [rng.normal(size=(n, 3)).astype(np.float32), b_values.astype(np.float32)]
        return [
            {
                "features": torch.from_numpy(p),
                "defined": torch.ones(p.shape, dtype=torch.bool),
                "present": torch.ones(n, dtype=torch.bool),
            }
            for p in parts
        ]

    fitted_on = batch(rng.normal(size=(300, 2)))
    parts = [token_features(t.kind, t.type, 0, p) for t, p in zip(tokens, fitted_on, strict=True)]
    flat = torch.cat(parts, 1)
    axes = fit_axes(flat.numpy(), [3, 2], embedding_dim=32)
    model = SpaceModel(tokens, 16, 32, principal_axes=axes.n_axes, flat_dims=axes.dims).eval()
    model.set_principal(axes)
    rows = batch(rng.normal(size=(20, 2)))
    shifted = [rows[0], {**rows[1], "features": rows[1]["features"] + 5.0}]
    hidden = torch.zeros(20, 2, dtype=torch.bool)
    hidden[:, 1] = True
    with torch.no_grad():
        seen = model.principal(model.flat_inputs(rows), hidden)
        moved = model.principal(model.flat_inputs(shifted), hidden)
        full = model.principal(model.flat_inputs(shifted))
        embedding = model(rows)
    torch.testing.assert_close(seen, moved)  # the hidden token's values changed nothing
    assert not torch.allclose(full, seen)  # unhidden, they do
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(20))
    assert embedding.shape == (20, 32)
    # importance views: token b hidden from the principal part alone, the learned part read
    # from the row's own embedding, and the hidden token's values change nothing
    assert model.seen_by_principal_part() == [True, True]
    base = model.masking_base(model.flat_inputs(rows), embedding)
    moved_base = model.masking_base(model.flat_inputs(shifted), embedding)
    views = [model.principal_masked_view(base, t) for t in range(2)]
    moved_views = [model.principal_masked_view(moved_base, t) for t in range(2)]
    principal_width = axes.n_axes + 1
    torch.testing.assert_close(views[1][:, principal_width:], embedding[:, principal_width:])
    torch.testing.assert_close(
        views[1][:, :principal_width] / views[1][:, :principal_width].norm(dim=1, keepdim=True),
        seen,
    )
    torch.testing.assert_close(views[1], moved_views[1])
    assert not torch.allclose(views[0], moved_views[0])  # b seen when a is hidden
