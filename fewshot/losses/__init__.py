"""Training objectives: SCHaNe and the baselines it is compared with.

Pure loss functions of ``(embeddings (B, d), labels (B,))`` returning a scalar, and an
``nn.Module`` that blends one of them with cross-entropy:

- :func:`schane_loss` -- SCHaNe (``L_SCLN``), the objective under study;
- :func:`supcon_loss` -- SupCon, Khosla et al. 2020, ``L_out`` form;
- :func:`supcon_in_loss` -- SupCon's ``L_in`` form (= SCHaNe with every ``beta_ik = 1``);
- :func:`simclr_loss` -- NT-Xent over the views of each image (SimCLR);
- :func:`hscl_loss` -- H-SCL, Jiang et al. 2022;
- :class:`Objective` -- ``(1 - lam) CE + lam contrastive``; :data:`OBJECTIVES` and
  :func:`create_objective` name them for the CLI and the fine-tuning stage.
"""

from fewshot.losses._pairwise import NoPositivePairsWarning
from fewshot.losses.hscl import hscl_loss
from fewshot.losses.objective import (
    OBJECTIVES,
    Objective,
    ObjectiveOutput,
    ObjectiveSpec,
    create_objective,
    list_objectives,
)
from fewshot.losses.schane import schane_loss
from fewshot.losses.simclr import simclr_loss
from fewshot.losses.supcon import supcon_in_loss, supcon_loss

__all__ = [
    "schane_loss",
    "supcon_loss",
    "supcon_in_loss",
    "simclr_loss",
    "hscl_loss",
    "Objective",
    "ObjectiveOutput",
    "ObjectiveSpec",
    "OBJECTIVES",
    "list_objectives",
    "create_objective",
    "NoPositivePairsWarning",
]
