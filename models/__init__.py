"""Deep sequence extractors (LSTM daily, TCN hourly) and the LightningModule that trains them."""

from models.ensemble import SeedEnsemble
from models.extractor_module import ExtractorModule
from models.losses import balanced_class_weights
from models.lstm import LSTMExtractor
from models.objectives import Objective
from models.outputs import ExtractorOutput
from models.tcn import TCNExtractor

__all__ = ["ExtractorModule", "ExtractorOutput", "LSTMExtractor", "Objective", "SeedEnsemble", "TCNExtractor",
           "balanced_class_weights"]
