"""A Thompson-sampling bandit over the content variants of each action.

Each variant has a Beta(1 + conversions, 1 + non-conversions) posterior over its conversion rate.
Counts come from outcomes: a message converts when its customer clicks it (an email event whose
campaign_id is the message_id) or places a completed order within the attribution window after
it. Only messages whose window has closed are counted, so re-running on the same day changes
nothing; the posterior is recomputed from every closed message each time (no running state to
drift or double-count), and a new state version is written only when the counts change.

Assignment draws one sample from each variant's posterior for every message and sends the variant
with the largest draw: a variant gets traffic in proportion to the chance that it is the best. A
draw is the posterior's quantile at a uniform number; in the pipeline the uniforms are hashed from
the message id, the seed and the state version (tessera/decisioning/decide.py), so a re-run
assigns the same variants, and a message keeps its variant when other customers come or go.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv

UNIFORM_BUCKETS = 2**53  # hashed uniforms: md5 modulo this, divided by it (exact in a double)
PRIOR = (1.0, 1.0)  # Beta(1, 1): uniform before any outcome


@dataclass(frozen=True)
class Posterior:
    """The posteriors of one action's variants, in catalogue order."""

    variants: tuple[str, ...]
    trials: np.ndarray  # closed messages per variant
    conversions: np.ndarray

    @property
    def alpha(self) -> np.ndarray:
        return PRIOR[0] + self.conversions

    @property
    def beta(self) -> np.ndarray:
        return PRIOR[1] + self.trials - self.conversions

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def updated(self, trials: np.ndarray, conversions: np.ndarray) -> Posterior:
        return Posterior(self.variants, self.trials + trials, self.conversions + conversions)


def empty(variants: tuple[str, ...]) -> Posterior:
    z = np.zeros(len(variants), dtype=np.int64)
    return Posterior(variants, z, z.copy())


def rng_for(seed: int, version: int, day_ordinal: int, action_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, version, day_ordinal, zlib.crc32(action_id.encode())])


def assign(posterior: Posterior, uniforms: np.ndarray) -> np.ndarray:
    """Thompson sampling: for each row of `uniforms` (one message; a number in [0, 1) per variant),
    the index of the variant whose posterior draw, the Beta quantile at that number, is largest.
    Vectorised over all messages."""
    if len(posterior.variants) == 1:
        return np.zeros(len(uniforms), dtype=np.int64)
    draws = betaincinv(posterior.alpha[None, :], posterior.beta[None, :], uniforms)
    return np.argmax(draws, axis=1)


def allocation(posterior: Posterior, rng: np.random.Generator, draws: int = 20_000) -> np.ndarray:
    """The share of traffic Thompson sampling sends to each variant now: P(variant's draw is the
    largest), by Monte Carlo."""
    picks = assign(posterior, rng.random((draws, len(posterior.variants))))
    return np.bincount(picks, minlength=len(posterior.variants)) / draws


def exploration_share(posterior: Posterior, shares: np.ndarray) -> float:
    """The share of traffic sent to variants other than the one with the best posterior mean."""
    return float(1.0 - shares[int(np.argmax(posterior.mean))])


@dataclass(frozen=True)
class Simulation:
    rates: tuple[float, ...]
    best: int
    share_best_by_round: list[float]
    final_posterior: Posterior

    def first_round_at(self, share: float) -> int | None:
        """The first round (1-based) from which the best variant's share stays at or above `share`."""
        for i in range(len(self.share_best_by_round)):
            if all(s >= share for s in self.share_best_by_round[i:]):
                return i + 1
        return None


def simulate(variants: tuple[str, ...], rates: tuple[float, ...], audience: int, rounds: int, seed: int) -> Simulation:
    """Rounds of send -> outcome -> posterior update with known conversion rates: each round the
    bandit assigns `audience` messages (the same `assign` the pipeline uses), each converts with its
    variant's rate, and the round's counts update the posterior before the next round."""
    if len(variants) != len(rates) or len(variants) < 2:
        raise ValueError("a simulation needs two or more variants, each with a rate")
    posterior = empty(variants)
    outcomes = np.random.default_rng([seed, 1])
    best = int(np.argmax(rates))
    shares = []
    for r in range(rounds):
        uniforms = rng_for(seed, r, r, "simulation").random((audience, len(variants)))
        picks = assign(posterior, uniforms)
        converted = outcomes.random(audience) < np.asarray(rates)[picks]
        trials = np.bincount(picks, minlength=len(variants))
        conversions = np.bincount(picks, weights=converted, minlength=len(variants)).astype(np.int64)
        posterior = posterior.updated(trials, conversions)
        shares.append(float(trials[best] / audience))
    return Simulation(tuple(rates), best, shares, posterior)
