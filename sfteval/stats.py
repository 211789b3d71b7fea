"""Uncertainty for accuracies measured on a few hundred items, and paired tests between runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

BOOTSTRAP_SEED = 1234
BOOTSTRAP_SAMPLES = 2000


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; sensible even near 0 and 1."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    units: Sequence[Sequence[bool]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled mean of `units`, resampling whole units.

    A unit is one prompt: for prompt-level accuracy it holds one verdict, for
    instruction-level accuracy all of that prompt's instruction verdicts, so the
    instructions of one prompt stay together (they are not independent).
    """
    if not units:
        return (0.0, 0.0)
    import numpy as np

    hits = np.array([sum(bool(v) for v in unit) for unit in units])
    sizes = np.array([len(unit) for unit in units])
    picks = np.random.default_rng(seed).integers(0, len(units), size=(samples, len(units)))
    totals = sizes[picks].sum(axis=1)
    means = np.sort(np.divide(hits[picks].sum(axis=1), totals, out=np.zeros(samples), where=totals > 0))
    low = means[int((1 - level) / 2 * samples)]
    high = means[min(samples - 1, int((1 + level) / 2 * samples))]
    return (float(low), float(high))


def paired_bootstrap_difference(
    units_a: Sequence[Sequence[bool]],
    units_b: Sequence[Sequence[bool]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of (B - A) in pooled accuracy, resampling units (prompts, questions)
    with the same draw for both runs, so the pairing is kept."""
    import numpy as np

    hits_a = np.array([sum(u) for u in units_a], dtype=np.int64)
    hits_b = np.array([sum(u) for u in units_b], dtype=np.int64)
    sizes = np.array([len(u) for u in units_a], dtype=np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sizes), size=(samples, len(sizes)))
    total = sizes[picks].sum(axis=1)
    total = np.where(total == 0, 1, total)
    diffs = (hits_b[picks].sum(axis=1) - hits_a[picks].sum(axis=1)) / total
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float | int]:
    """Exact (binomial) McNemar test on paired verdicts: two-sided p-value from the
    discordant pairs only (a right and b wrong vs a wrong and b right)."""
    if len(a) != len(b):
        raise ValueError("paired verdict lists differ in length")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    if n == 0:
        p = 1.0
    else:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        p = min(1.0, 2 * tail)
    return {"only_first": only_a, "only_second": only_b, "discordant": n, "p_value": p}


def clustered_mcnemar(units_a: Sequence[Sequence[bool]], units_b: Sequence[Sequence[bool]]) -> dict[str, float | int]:
    """McNemar's test for verdicts that come in clusters (the instructions of one prompt), after
    Durkalski et al. (Statistics in Medicine, 2003): with d_k = (right only in A) - (right only
    in B) within cluster k, X^2 = (sum d_k)^2 / sum d_k^2 on 1 degree of freedom. Clusters are
    taken as independent, the verdicts inside one are not; with one verdict per cluster it is
    the ordinary (asymptotic) McNemar test."""
    if len(units_a) != len(units_b):
        raise ValueError("paired unit lists differ in length")
    if any(len(unit_a) != len(unit_b) for unit_a, unit_b in zip(units_a, units_b)):
        raise ValueError("paired units differ in size")
    # Concordant verdicts cancel: a cluster's discordance is the difference of its hit counts.
    differences = [sum(map(bool, unit_a)) - sum(map(bool, unit_b)) for unit_a, unit_b in zip(units_a, units_b)]
    spread = sum(d * d for d in differences)
    statistic = sum(differences) ** 2 / spread if spread else 0.0
    return {
        "statistic": statistic,
        "p_value": math.erfc(math.sqrt(statistic / 2)),
        "clusters_with_changes": sum(1 for d in differences if d),
    }
