"""The real-image baselines of the distillation benchmarks, at the same images per class (IPC) as a distilled set.

- `random_real`: ipc real images drawn at random from each class (seeded).
- `herding`: per class, Welling's (2009) herding as the DC/DM benchmarks use it (DC_benchmark's `herding`): greedy
  mean matching on an embedding. At step k it adds the not-yet-chosen sample x that brings the mean of the chosen
  set closest to the class mean mu, i.e. argmin_x ||k mu - (sum of the chosen) - x||; a sample is chosen at most
  once. Ties go to the lowest index.

Both return indices into the labels, class by class in ascending class order (the order of a distilled set's
labels); the classes are the distinct values in the labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _members(labels: object, ipc: int) -> dict[int, np.ndarray]:
    import numpy as np

    from curate.errors import UsageError

    if ipc < 1:
        raise UsageError(f"ipc must be at least 1, got {ipc}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UsageError(f"labels must be one class index per image, got shape {labels.shape}")
    members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    for c, rows in members.items():
        if len(rows) < ipc:
            raise UsageError(f"class {c} has {len(rows)} images; ipc {ipc} needs at least {ipc}")
    return members


def random_real(labels: object, ipc: int, seed: int) -> np.ndarray:
    """Returns the int64 indices of ipc images drawn uniformly without replacement from each class (one
    numpy.random.default_rng(seed) stream, classes in ascending order); raises UsageError for ipc < 1 or a class
    with fewer than ipc images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = [rng.choice(rows, size=ipc, replace=False) for rows in _members(labels, ipc).values()]
    return np.concatenate(chosen).astype(np.int64)


def herding(features: object, labels: object, ipc: int) -> np.ndarray:
    """Returns the int64 indices of the ipc images herding picks from each class on `features` (N x D, one row per
    image: pixels flattened or an embedding), in the order picked, classes ascending; raises UsageError for
    ipc < 1, a class with fewer than ipc images, or features whose rows do not match the labels."""
    import numpy as np

    from curate.errors import UsageError

    members = _members(labels, ipc)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(np.asarray(labels)):
        raise UsageError(f"features must be N x D with one row per label, got shape {features.shape}")
    return np.concatenate([rows[_herd(features[rows], ipc)] for rows in members.values()]).astype(np.int64)


def _herd(features: np.ndarray, count: int) -> list[int]:
    """Returns the positions (into `features`) herding picks, in order."""
    import numpy as np

    mean = features.mean(axis=0)
    total = np.zeros_like(mean)
    available = np.ones(len(features), dtype=bool)
    picked = []
    for k in range(1, count + 1):
        distance = np.linalg.norm(k * mean - total - features, axis=1)
        distance[~available] = np.inf
        choice = int(np.argmin(distance))  # the first minimum: ties to the lowest index
        picked.append(choice)
        available[choice] = False
        total += features[choice]
    return picked
