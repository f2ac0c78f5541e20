"""What every extractor returns, so the LightningModule and the backfill treat both nets alike."""

from typing import NamedTuple

import torch
import torch.nn.functional as F


class ExtractorOutput(NamedTuple):
    embedding: torch.Tensor  # (B, embedding_dim): latent features for the feature store
    logits: torch.Tensor  # (B, n_classes): RAW class scores; softmax is applied once, at read time


def bottleneck(embedding: torch.Tensor) -> torch.Tensor:
    """What the class head reads of the embedding. The nonlinearity makes every dimension's gradient
    depend on the sample, so the loss trains all of them; through a purely linear map to the 3 logits only
    the 3-dimensional subspace the class head reads would learn, the rest would stay a random projection."""
    return F.gelu(embedding)
