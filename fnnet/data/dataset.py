"""The container every loader returns, and the one error it raises."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

NUM_CLASSES = 10
"""Classes of the image datasets here (digits 0–9; Fashion-MNIST's ten garment kinds); the
spiral has as many as it is asked for (``Dataset.num_classes``)."""


class Dataset(NamedTuple):
    """A classification dataset as host arrays.

    ``x_*``: float32 ``(N, D)`` (images: ``D = H·W``, in ``[0, 1]``); ``t_*``: int32 ``(N,)``
    in ``[0, num_classes)``; ``image_shape``: ``(H, W)`` to undo the flattening (None for
    data that are not images, such as the spiral); ``files``: the files actually read (for
    the record of a run), or a description of a built-in source.
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, int] | None
    files: tuple[str, ...] = ()

    def as_images(self) -> Dataset:
        """The same data with each example as a one-channel image ``(N, 1, H, W)`` (NCHW, as
        the conv nets take it) instead of a flat vector; a no-op if it already is."""
        if self.image_shape is None:
            raise ValueError(f"{self.name}: its examples are not images (no image_shape); the "
                             f"conv nets take images")
        shape = (1, *self.image_shape)

        def images(x: np.ndarray) -> np.ndarray:
            return x.reshape(len(x), *shape)

        return self._replace(x_train=images(self.x_train), x_test=images(self.x_test))


class DatasetError(Exception):
    """Dataset files are missing, could not be downloaded, or are corrupt or inconsistent."""
