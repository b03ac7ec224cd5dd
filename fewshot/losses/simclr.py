"""SimCLR's NT-Xent loss: the positives of a view are the other views of the same image."""

from __future__ import annotations

from torch import Tensor

from fewshot.losses._pairwise import pairwise_loss
from fewshot.losses._validate import check_embeddings, check_labels, check_temperature
from fewshot.losses.supcon import supcon_rows

__all__ = ["simclr_loss"]


def simclr_loss(embeddings: Tensor, instance_ids: Tensor, temperature: float = 0.5) -> Tensor:
    r"""NT-Xent (Chen et al., ICML 2020), generalised to any number of views per image.

    Rows with the same ``instance_ids`` entry are views of one image. With L2-normalised rows
    and ``s_ij = z_i . z_j / tau``, each view ``i`` with at least one other view ``P(i)``::

        L_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )

    and the loss is the mean over such views. With two views per image this is exactly NT-Xent;
    it equals :func:`~fewshot.losses.supcon_loss` with the instance ids as labels (class labels
    are not used: other images of the same class are negatives).

    Args:
        embeddings: ``(B, d)`` floating-point tensor (any norm, any float dtype).
        instance_ids: ``(B,)`` integer id of the source image of each row.
        temperature: ``tau > 0``. Default 0.5.

    Returns:
        A scalar tensor, float32 (float64 for float64 input). If no image has two views it is a
        zero still connected to the graph, and a ``NoPositivePairsWarning`` is issued.

    Raises:
        TypeError: ``embeddings`` not a floating-point tensor, ``instance_ids`` not integers.
        ValueError: ``embeddings`` not 2-D, containing NaN/Inf or an all-zero row;
            ``instance_ids`` missing, not 1-D or of a different length; ``temperature <= 0``.
    """
    embeddings = check_embeddings(embeddings)
    instance_ids = check_labels(instance_ids, embeddings, name="instance_ids")
    temperature = check_temperature(temperature)
    return pairwise_loss(embeddings, instance_ids, temperature, supcon_rows, "simclr_loss")
