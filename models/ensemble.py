"""Seed ensembles (issue 33, item 4): K networks of one config, trained with different seeds, served as
one network whose outputs are the members' means.

- embedding: the mean of the members' embeddings, (B, embedding_dim);
- logits: log of the mean of the members' class probabilities, so that the softmax the store applies at
  read time gives exactly the mean probability (softmax(log p) = p when p sums to 1).
An artifact stores it like any net (`net.pt` holds `members.<k>.*`; its `net` config names this class,
the member config and K), so the backfill and the store read one artifact as for a single fit.
"""

from __future__ import annotations

import torch
from hydra.utils import get_class
from torch import nn

from models.outputs import ExtractorOutput


class SeedEnsemble(nn.Module):
    def __init__(self, member: dict, members: int = 1, nets: list[nn.Module] | None = None) -> None:
        super().__init__()
        config = {k: v for k, v in member.items() if k != "_target_"}
        cls = get_class(member["_target_"])
        self.members = nn.ModuleList(nets if nets is not None else [cls(**config) for _ in range(members)])
        if len(self.members) != members:
            raise ValueError(f"SeedEnsemble of {members} members given {len(self.members)} nets")

    @property
    def embedding_head(self) -> nn.Module:
        """The members' shared embedding shape (what the store's schema reads)."""
        return self.members[0].embedding_head

    def forward(self, x: torch.Tensor) -> ExtractorOutput:
        outputs = [member(x) for member in self.members]  # K x ((B, E), (B, 3))
        embedding = torch.stack([o.embedding for o in outputs]).mean(0)  # (B, E)
        log_probs = torch.stack([o.logits.float().log_softmax(-1) for o in outputs])  # (K, B, 3)
        logits = torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(outputs))))  # log mean p
        return ExtractorOutput(embedding=embedding, logits=logits)


def member_state(state: dict, k: int) -> dict:
    """Member k's weights from an ensemble's state dict (a single net's state dict is every member's)."""
    prefix = f"members.{k}."
    if not any(key.startswith("members.") for key in state):
        return state
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
