"""The space model's transformer: the [CLS] output read from a last layer computed for
[CLS] alone equals the whole transformer's, with and without left-out tokens."""

from __future__ import annotations

import torch

from pipeline.spaces.model import SpaceModel, TokenSpec


def _model() -> SpaceModel:
    tokens = [TokenSpec(f"r{i}", "reference", "reference", dim=4) for i in range(5)]
    return SpaceModel(tokens, d_model=32, embedding_dim=16, dropout=0.0)


def test_cls_only_last_layer_equals_the_whole_transformer():
    torch.manual_seed(0)
    model = _model()
    tokens = torch.randn(40, 6, 32)
    padding = torch.zeros(40, 6, dtype=torch.bool)
    padding[:15, 3:] = True  # a third of the rows with half their tokens left out
    for train in (False, True):  # the fused inference kernel, then the training path
        model.train(train)
        for mask in (None, padding):
            whole = model.transformer(tokens, src_key_padding_mask=mask)[:, 0]
            torch.testing.assert_close(
                model._encoded_cls(tokens, mask), whole, rtol=1e-5, atol=1e-5
            )


def test_cls_only_last_layer_gives_the_same_gradients():
    """Training reads the [CLS] output alone, so the weights get the same gradients."""
    torch.manual_seed(1)
    model = _model().train()
    tokens = torch.randn(24, 6, 32)
    grads = []
    for cls_only in (False, True):
        model.zero_grad()
        out = model._encoded_cls(tokens, None) if cls_only else model.transformer(tokens)[:, 0]
        (out**2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.transformer.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-5, msg=name)
