"""The ``neighbours`` suite: results of the field beside the paper, as executable claims
(one module per claim, registered on import with ``suite="neighbours"``)."""

from maml_depth.validation.neighbours import (
    ach_balanced,
    bernacchia_negative_rate,
    collins_representation,
    gao_sener_tradeoff,
    raghu_feature_reuse,
    saunshi_separation,
)

__all__ = ["ach_balanced", "bernacchia_negative_rate", "collins_representation",
           "gao_sener_tradeoff", "raghu_feature_reuse",
           "saunshi_separation"]
