"""The one shape every architecture has, so every method can reach what it needs.

A model is `stages` (feature extractors, applied in order), a `neck` that turns the last stage's
output into the penultimate embedding (pooling / flattening), and a linear `head` to logits.
`forward` gives logits; `forward_all` gives logits, the embedding and every stage's output
(feature maps for convolutional models, hidden activations for MLPs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    logits: torch.Tensor | None  # None only beside `soft`
    embedding: torch.Tensor  # (N, D) penultimate representation
    features: list[torch.Tensor]  # each stage's output: (N, C), (N, C, L) or (N, C, H, W)
    # A cached teacher's only: this batch's rows of what the method derived once from the cached
    # logits of the whole training split (Method.soft_targets), given instead of its logits (the
    # method reads only these); None otherwise.
    soft: tuple[torch.Tensor, ...] | None = None


class DistillNet(nn.Module):
    """Stages -> neck -> linear head. `feature_kind` is "vector", "map1d" or "map2d"."""

    def __init__(self, stages: list[nn.Module], neck: nn.Module, head: nn.Linear, feature_kind: str):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.neck = neck
        self.head = head
        self.feature_kind = feature_kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(self.neck(x))

    def forward_all(self, x: torch.Tensor) -> ModelOutput:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        embedding = self.neck(x)
        return ModelOutput(self.head(embedding), embedding, features)

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    @property
    def has_feature_maps(self) -> bool:
        return self.feature_kind in ("map1d", "map2d")


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
