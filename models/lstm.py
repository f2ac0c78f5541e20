"""LSTM extractor over 30-day sequences of 12 daily features (SPEC §4)."""

import torch
from torch import nn

from models.outputs import ExtractorOutput, bottleneck


class LSTMExtractor(nn.Module):
    """Two stacked LSTM layers; the top layer's last hidden state feeds the embedding head, and the
    class head reads the embedding (a learned bottleneck, SPEC §4).

    Parameters (defaults): 2 LSTM layers of 4 * (h * (in + h) + 2h) each (PyTorch keeps two bias
    vectors per gate), i.e. 19,968 + 33,280, plus heads 64*12+12 + 12*3+3 = 780 + 39: 54,067 in all.
    """

    def __init__(
        self,
        n_features: int = 12,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.3,
        embedding_dim: int = 12,
        n_classes: int = 3,
    ) -> None:
        super().__init__()
        # nn.LSTM applies `dropout` to the outputs of every layer except the last, i.e. between them.
        self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.embedding_head = nn.Linear(hidden, embedding_dim)
        self.class_head = nn.Linear(embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> ExtractorOutput:
        # x: (B, T=30, n_features)
        _, (h_n, _) = self.lstm(x)  # h_n: (layers, B, hidden)
        last = h_n[-1]  # (B, hidden): top layer after the last (most recent) step
        embedding = self.embedding_head(last)  # (B, embedding_dim)
        return ExtractorOutput(embedding=embedding, logits=self.class_head(bottleneck(embedding)))  # logits (B, 3)
