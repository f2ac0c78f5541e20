"""Walk-forward folds in time order with purges, and per-fold normalisation fit on train rows only."""

from splits.normalization import Normalizer
from splits.walkforward import Fold, make_folds

__all__ = ["Fold", "Normalizer", "make_folds"]
