"""Stopping a trial whose validation curve says it will not reach the front.

Optuna's pruners judge a trial by one number against every other trial, and Optuna refuses
`Trial.report` in multi-objective studies. Pruning on accuracy alone would also stop the cheap
students a budget is looking for. So the rule here compares a trial only with the finished
trials that cost no more on every objective. Those peers are on or near the front already, and
a costlier trial that trails them at the same epoch is dominated unless it overtakes them later.
`hopeless` says so once the trial is past `warmup` epochs (and before its last, when stopping
would save nothing) and its best validation accuracy so far is more than `margin` below the
median of its peers' best at the same epoch, with at least `min_peers` peers to judge by.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True)
class PruningRule:
    warmup: int  # epochs trained before any decision
    epochs: int  # a trial's epochs: no decision at the last one
    margin: float = 0.05  # accuracy a trial may trail its peers by (noise between seeds)
    min_peers: int = 2

    @classmethod
    def for_epochs(cls, epochs: int) -> PruningRule:
        """Decide after a quarter of the epochs (at least 2)."""
        return cls(warmup=max(2, math.ceil(epochs / 4)), epochs=epochs)


def hopeless(curve: list[float], costs: list[float], finished: list[tuple[list[float], list[float]]],
             rule: PruningRule) -> str | None:
    """Why a running trial cannot reach the front, or None to let it go on.

    `curve`: its validation accuracy per epoch so far; `costs`: its objective costs;
    `finished`: (costs, curve) of each finished trial."""
    epoch = len(curve)
    if epoch < rule.warmup or epoch >= rule.epochs:
        return None
    peers = [c for cost, c in finished
             if len(c) >= epoch and all(theirs <= mine for theirs, mine in zip(cost, costs))]
    if len(peers) < rule.min_peers:
        return None
    mine = max(curve)
    theirs = median(max(c[:epoch]) for c in peers)
    if mine + rule.margin >= theirs:
        return None
    return (f"at epoch {epoch} its best validation accuracy {mine:.3f} trails {theirs:.3f}, the median of "
            f"{len(peers)} finished trials that cost no more, by more than {rule.margin:g}")
