"""The backfill: trained extractors -> embeddings and raw logits in the feature store.

One path for every caller (`embed.py`, the main job, the daily command): `run_backfill` plans each
extractor's decision times, stages only what the store lacks, and commits per table.
"""

from backfill.plan import BackfillInputError, BackfillPlan, commit_staged, make_plan, stage_backfill
from backfill.run import predict_trainer, run_backfill, select_artifacts

__all__ = [
    "BackfillInputError",
    "BackfillPlan",
    "commit_staged",
    "make_plan",
    "predict_trainer",
    "run_backfill",
    "select_artifacts",
    "stage_backfill",
]
