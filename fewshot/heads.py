"""Heads on a backbone's pooled features, trained during fine-tuning.

:class:`ClassificationHead` (the cross-entropy term), :class:`ProjectionHead` (the
contrastive term) and :class:`NeckHead` (a trainable MLP whose output becomes the embedding;
:class:`NeckedBackbone` puts it behind a backbone). They are separate modules, so a
checkpoint's backbone loads without them; a checkpoint records each head as
``{"type": class name, "config": head.config()}`` and :func:`head_from_config` rebuilds it
from :data:`HEADS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fewshot._rng import seeded

__all__ = ["ClassificationHead", "ProjectionHead", "NeckHead", "NeckedBackbone", "HEADS", "head_from_config"]


class ClassificationHead(nn.Module):
    """Linear classifier for the cross-entropy term: dropout, then ``Linear``.

    ``(B, in_features)`` → ``(B, num_classes)`` logits.

    Args:
        in_features: embedding dims (``backbone.num_features``).
        num_classes: number of (base) classes.
        dropout: dropout probability on the embedding (active in train mode only).
        seed: seed the initialisation without touching torch's global RNG.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0, *, seed: int | None = None) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1, got {in_features}, {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features, self.num_classes, self.dropout_p = int(in_features), int(num_classes), float(dropout)
        with seeded(seed):
            self.dropout = nn.Dropout(self.dropout_p)
            self.fc = nn.Linear(self.in_features, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {"in_features": self.in_features, "num_classes": self.num_classes, "dropout": self.dropout_p}


class ProjectionHead(nn.Module):
    """MLP projection for the contrastive term: ``num_layers`` linear layers with ReLU between.

    ``(B, in_features)`` → ``(B, out_features)`` (not normalised; the loss normalises).

    Args:
        in_features: embedding dims (``backbone.num_features``).
        out_features: projection dims (128).
        hidden_features: width of the hidden layers (default ``in_features``).
        num_layers: number of linear layers (2; 1 is a linear projection).
        seed: seed the initialisation without touching torch's global RNG.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 128,
        hidden_features: int | None = None,
        num_layers: int = 2,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        hidden = int(hidden_features or in_features)
        if min(in_features, out_features, hidden) < 1 or num_layers < 1:
            raise ValueError(
                f"ProjectionHead needs positive sizes and num_layers >= 1, got in={in_features}, "
                f"out={out_features}, hidden={hidden}, num_layers={num_layers}"
            )
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.hidden_features, self.num_layers = hidden, int(num_layers)
        dims = [self.in_features] + [hidden] * (self.num_layers - 1) + [self.out_features]
        layers: list[nn.Module] = []
        with seeded(seed):
            for i in range(self.num_layers):
                if i:
                    layers.append(nn.ReLU(inplace=True))
                layers.append(nn.Linear(dims[i], dims[i + 1]))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "hidden_features": self.hidden_features,
            "num_layers": self.num_layers,
        }


class NeckHead(nn.Module):
    """A trainable MLP neck on a backbone's pooled features; its output is the embedding.

    ``(B, in_features)`` → ``(B, dims[-1])``: ``Linear(in, dims[0])``, then ReLU and
    ``Linear(dims[i-1], dims[i])`` for each further size (no activation after the last).

    Args:
        in_features: backbone feature dims (``backbone.num_features``).
        dims: output sizes of the linear layers, at least one.
        seed: seed the initialisation without touching torch's global RNG.

    Raises:
        ValueError: no sizes, or a size < 1.
    """

    def __init__(self, in_features: int, dims: Sequence[int], *, seed: int | None = None) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or min([int(in_features), *dims]) < 1:
            raise ValueError(f"NeckHead needs in_features >= 1 and at least one size >= 1, got {in_features}, {dims}")
        self.in_features, self.dims = int(in_features), tuple(dims)
        sizes = [self.in_features, *dims]
        layers: list[nn.Module] = []
        with seeded(seed):
            for i in range(len(dims)):
                if i:
                    layers.append(nn.ReLU())
                layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        self.mlp = nn.Sequential(*layers)

    @property
    def out_features(self) -> int:
        return self.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {"in_features": self.in_features, "dims": list(self.dims)}


class NeckedBackbone(nn.Module):
    """A backbone followed by its :class:`NeckHead`: ``(B, 3, H, W)`` → ``(B, neck.out_features)``,
    what ``fewshot extract --checkpoint`` embeds with when a checkpoint has a neck."""

    def __init__(self, backbone: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.num_features = int(neck.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))


#: Head types a checkpoint can rebuild, by class name.
HEADS: dict[str, type[nn.Module]] = {
    "ClassificationHead": ClassificationHead,
    "ProjectionHead": ProjectionHead,
    "NeckHead": NeckHead,
}


def head_from_config(type_name: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a head recorded as ``{"type": type_name, "config": config}``.

    Raises:
        ValueError: an unknown head type or arguments it does not take.
    """
    if type_name not in HEADS:
        raise ValueError(f"unknown head type {type_name!r}; expected one of {sorted(HEADS)}")
    try:
        return HEADS[type_name](**dict(config))
    except TypeError as exc:
        raise ValueError(f"bad config for {type_name}: {exc}") from exc
