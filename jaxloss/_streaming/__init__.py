"""The streaming engine and the cross-entropy head built on it (core).

``_engine`` streams a softmax over the columns of a projection that is never
built (row statistics by vocabulary chunks, or gradients formed in the forward
pass by token chunks); ``_head`` turns those statistics into the cross-entropy
of a large softmax head, shared by ``linear_cross_entropy`` and the margin
heads. Family modules import from here, never from each other.
"""

from ._engine import (
    Config,
    Stats,
    chunk_start,
    explicit_sharding,
    fused_sum,
    global_stats,
    local_stats,
    outer_axes,
    project,
    split_stats,
    token_chunk_size,
)
from ._head import (
    PRECISIONS,
    check_head,
    check_nonnegative_labels,
    default_chunk_size,
    head_cross_entropy,
    sharded_axes,
)

__all__ = [
    "PRECISIONS", "Config", "Stats", "check_head", "check_nonnegative_labels", "chunk_start", "default_chunk_size",
    "explicit_sharding", "fused_sum", "global_stats", "head_cross_entropy", "local_stats", "outer_axes", "project",
    "sharded_axes", "split_stats", "token_chunk_size",
]
