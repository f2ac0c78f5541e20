"""Class weighting against the HOLD-heavy label imbalance."""

import numpy as np
import torch


def balanced_class_weights(labels: torch.Tensor | np.ndarray, n_classes: int = 3) -> torch.Tensor:
    """Inverse-frequency weights n / (n_classes * count_c), so every class carries equal total weight.

    Pass the TRAIN labels of the fold only: counting validation or test labels would leak their
    class balance into training.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() == 0:
        raise ValueError("balanced_class_weights needs at least one label")
    if labels.dtype.is_floating_point or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be integers in [0, {n_classes}), got {labels.unique().tolist()}")
    counts = torch.bincount(labels.long(), minlength=n_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"classes {missing} have no training labels: their weight would be infinite")
    return (labels.numel() / (n_classes * counts)).float()
