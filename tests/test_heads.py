"""fewshot.heads: the classification and projection heads, rebuilt from their config."""

from __future__ import annotations

import pytest
import torch

from fewshot.heads import ClassificationHead, ProjectionHead, head_from_config


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_heads_shapes_config_and_seed():
    head = ClassificationHead(16, 5, dropout=0.1, seed=0)
    assert head(torch.randn(4, 16)).shape == (4, 5)
    proj = ProjectionHead(16, out_features=8, seed=0)
    assert proj(torch.randn(4, 16)).shape == (4, 8)
    assert _equal_state(proj, ProjectionHead(16, out_features=8, seed=0))
    rebuilt = head_from_config("ProjectionHead", proj.config())
    assert rebuilt.config() == proj.config()
    assert ProjectionHead(16, 8, num_layers=1).mlp[0].out_features == 8
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        ClassificationHead(16, 5, dropout=1.0)
    with pytest.raises(ValueError, match="unknown head type 'Mlp'"):
        head_from_config("Mlp", {})
