"""What every extractor returns, so the LightningModule and the backfill treat both nets alike."""

from typing import NamedTuple

import torch


class ExtractorOutput(NamedTuple):
    embedding: torch.Tensor  # (B, embedding_dim): latent features for the feature store
    logits: torch.Tensor  # (B, n_classes): RAW class scores; softmax is applied once, at read time
