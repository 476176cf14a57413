"""Seeds of the plan generators of several processes (ranks), one formula for every integration.

Lightning's and the Hugging Face Trainer's callbacks give each process after the
first its own stream of plans, reproducibly from the mixer's seed.
"""

from __future__ import annotations

__all__ = ["rank_seed"]


def rank_seed(seed: int, rank: int) -> int:
    """The plan-generator seed of process ``rank`` > 0 (rank 0 keeps the mixer's own generator).

    Ranks draw different plans, in their DataLoader workers too (:meth:`multimix.Mixer.seed_worker`
    starts from the rank's stream), and a run is reproducible from ``seed`` and the world size.

    Example:
        >>> rank_seed(0, 1) != rank_seed(0, 2) != rank_seed(1, 1)
        True
    """
    return (seed * 1_000_003 + 7_919 * rank) % 2**63
