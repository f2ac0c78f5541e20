"""Causal TCN extractor over 168-hour windows of 6 hourly channels (SPEC §4 less its hour-of-day pair).

Receptive field: each block holds two dilated convs of kernel k, each reaching (k - 1) * d steps
back, so one output step sees 1 + 2 * (k - 1) * (1 + 2 + 4 + 8) = 61 hours. (The seed report's
"121" miscounts.) The global average pool is what lets the embedding summarise all 168 hours.

Causality holds only in eval mode: there BatchNorm is a fixed per-channel affine map, but in
train mode it normalises with statistics taken over the whole batch and all time steps, so a
later step shifts the normalisation of earlier ones. Causality tests must run under `.eval()`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.outputs import ExtractorOutput, bottleneck


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only, so output step t reads inputs at steps <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        # No bias: the BatchNorm that follows subtracts the mean, which would cancel it exactly.
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=False)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, T) -> (B, C_out, T)
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualBlock(nn.Module):
    """z = ReLU(BN(conv(x))); ẑ = Dropout(ReLU(BN(conv(z)))); y = ReLU(ẑ + W_s·x)."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, channels, kernel_size, dilation)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.bn2 = nn.BatchNorm1d(channels)
        self.dropout = nn.Dropout(dropout)
        # W_s only where the channel count changes; a 1x1 conv is per step, hence causal.
        self.shortcut = (
            nn.Conv1d(in_channels, channels, 1, bias=False) if in_channels != channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, T)
        z = F.relu(self.bn1(self.conv1(x)))  # (B, C, T)
        z = self.dropout(F.relu(self.bn2(self.conv2(z))))  # (B, C, T)
        return F.relu(z + self.shortcut(x))  # (B, C, T)


class TCNExtractor(nn.Module):
    """Residual blocks with growing dilation, global average pool over time, the embedding head, and
    the class head reading the embedding (a learned bottleneck, SPEC §4).

    Parameters (defaults): block 1 = conv 6*64*3 + BN 2*64 + conv 64*64*3 + BN 2*64 + W_s 6*64
    = 14,080; blocks 2-4 = 2 * (64*64*3 + 2*64) = 24,832 each; heads 64*16+16 + 16*3+3 = 1,091;
    total 89,667.
    """

    def __init__(
        self,
        in_channels: int = 6,
        channels: int = 64,
        kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        dropout: float = 0.2,
        embedding_dim: int = 16,
        n_classes: int = 3,
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(in_channels if i == 0 else channels, channels, kernel_size, d, dropout)
                for i, d in enumerate(dilations)
            )
        )
        self.embedding_head = nn.Linear(channels, embedding_dim)
        self.class_head = nn.Linear(embedding_dim, n_classes)

    def step_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step features before pooling: (B, in_channels, T) -> (B, channels, T)."""
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> ExtractorOutput:
        # x: (B, in_channels, T=168)
        pooled = self.step_features(x).mean(dim=-1)  # (B, channels)
        embedding = self.embedding_head(pooled)  # (B, embedding_dim)
        return ExtractorOutput(embedding=embedding, logits=self.class_head(bottleneck(embedding)))  # logits (B, 3)
