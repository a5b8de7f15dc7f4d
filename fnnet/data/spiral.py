"""The sequel's spiral data set (its chapter 1): points on interleaved spiral arms, one arm
per class, in 2-D.

Point ``i`` of arm ``j`` (``i = 0 … P − 1``, rate ``r = i / P``) lies at radius ``r`` and angle
``θ = 4·j + 4·r + ε`` with ``ε ~ N(0, noise²)`` (the book's ``noise = 0.2``), at
``(r·sin θ, r·cos θ)``. The book trains on its 300 points (100 per class, 3 classes) and scores
on them too; here those are the training set, and the test set is a fresh draw of the same
generator (another seed), so test accuracy measures the decision regions, not memory.

The noise comes from NumPy's legacy Mersenne-Twister stream (``np.random.RandomState(seed)``,
the stream ``np.random.seed`` seeds), drawn point by point in the book's order (arm by arm):
with the book's seed 1984 these are the book's own 300 points, to float32 rounding. NumPy
keeps that stream fixed across versions. (``np.random.default_rng`` would give another draw
of the same distribution: the §1.4 run ends at a different loss on it, see
``experiments/spiral.py``.)
"""

from __future__ import annotations

import numpy as np

from fnnet._checks import check_int
from fnnet.data.dataset import Dataset

SPIRAL_SOURCE = "generated: the sequel's spiral (load_spiral)"
SEED_MAX = 2**32 - 1
"""The largest seed ``np.random.RandomState`` takes (:func:`load_spiral`: one less, its test
set uses ``seed + 1``)."""


def spiral_points(points_per_class: int = 100, classes: int = 3, *, noise: float = 0.2,
                  seed: int = 1984) -> tuple[np.ndarray, np.ndarray]:
    """``(x, t)``: ``x`` float32 ``(P·K, 2)``, ``t`` int32 ``(P·K,)`` in ``[0, K)``, arm by arm
    (the book's order), angle noise ``noise·ε`` with ``ε`` the first ``P·K`` standard normals
    of ``np.random.RandomState(seed)`` (so ``seed=1984`` gives the book's points)."""
    points_per_class = check_int("points_per_class", points_per_class)
    classes = check_int("classes", classes, minimum=2)
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    seed = check_int("seed", seed, minimum=0)
    if seed > SEED_MAX:
        raise ValueError(f"seed must be in [0, {SEED_MAX}] (NumPy's legacy stream); got {seed}")
    rng = np.random.RandomState(seed)  # the book's stream (np.random.seed(1984))
    rate = np.tile(np.arange(points_per_class) / points_per_class, classes)
    arm = np.repeat(np.arange(classes), points_per_class)
    theta = 4.0 * arm + 4.0 * rate + noise * rng.standard_normal(len(rate))
    x = np.stack([rate * np.sin(theta), rate * np.cos(theta)], axis=1).astype(np.float32)
    return x, arm.astype(np.int32)


def load_spiral(points_per_class: int = 100, classes: int = 3, *, noise: float = 0.2,
                seed: int = 1984, test_points_per_class: int | None = None) -> Dataset:
    """The spiral as a :class:`Dataset`: the training set is :func:`spiral_points` with
    ``seed``; the test set the same generator with ``seed + 1`` and
    ``test_points_per_class`` (default: as many as the training set) points per arm.

    >>> data = load_spiral()
    >>> data.x_train.shape, data.num_classes, data.x_test.shape
    ((300, 2), 3, (300, 2))
    """
    if seed == SEED_MAX:
        raise ValueError(f"seed must be in [0, {SEED_MAX - 1}] (the test set uses seed + 1); "
                         f"got {seed}")
    x, t = spiral_points(points_per_class, classes, noise=noise, seed=seed)
    x_test, t_test = spiral_points(test_points_per_class or points_per_class, classes,
                                   noise=noise, seed=seed + 1)
    return Dataset("spiral", x, t, x_test, t_test, classes, None, (SPIRAL_SOURCE,))
