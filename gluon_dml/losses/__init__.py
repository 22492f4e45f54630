"""Metric-learning losses, one family per file, and the ``get_loss`` registry."""
from .base import label_masks, pairwise_distance, pairwise_similarity, pairwise_sq_distance
from .binomial import BinomialDevianceLoss
from .center import TripletCenterLoss
from .daml import DAMLNPairLoss, DAMLTripletLoss
from .face import ArcFaceLoss, CosFaceLoss
from .hashing import DCHLoss, DSHLoss, HashNetLoss
from .lifted import LiftedStructureLoss
from .margin import MarginLoss
from .multisim import MultiSimilarityLoss
from .nca import NCALoss
from .npair import NPairLoss
from .pair import ContrastiveLoss
from .proxy import ProxyAnchorLoss, ProxyNCALoss
from .quadruplet import QuadrupletLoss
from .ranked_list import RankedListLoss
from .triplet import TripletLoss

_LOSSES = {
    'arcface': ArcFaceLoss,
    'binomial': BinomialDevianceLoss,
    'contrastive': ContrastiveLoss,
    'cosface': CosFaceLoss,
    'daml_npair': DAMLNPairLoss,
    'daml_triplet': DAMLTripletLoss,
    'dch': DCHLoss,
    'dsh': DSHLoss,
    'hashnet': HashNetLoss,
    'lifted': LiftedStructureLoss,
    'margin': MarginLoss,
    'multi_similarity': MultiSimilarityLoss,
    'nca': NCALoss,
    'npair': NPairLoss,
    'proxy_anchor': ProxyAnchorLoss,
    'proxy_nca': ProxyNCALoss,
    'quadruplet': QuadrupletLoss,
    'ranked_list': RankedListLoss,
    'triplet': TripletLoss,
    'triplet_center': TripletCenterLoss,
}


def register_loss(name, cls):
    """Add a loss class to the registry (a new loss is one class plus one such line)."""
    _LOSSES[name.lower()] = cls


def list_losses():
    return sorted(_LOSSES)


def get_loss_class(name):
    """The loss class registered as ``name`` (``-`` and ``_`` alike, any case)."""
    key = name.lower().replace('-', '_')
    if key not in _LOSSES:
        raise ValueError('Unknown loss %r; available losses: %s.' % (name, ', '.join(list_losses())))
    return _LOSSES[key]


def get_loss(name, **kwargs):
    """Build a loss by name, e.g. ``get_loss('margin', margin=0.2, beta=1.2)``."""
    return get_loss_class(name)(**kwargs)
