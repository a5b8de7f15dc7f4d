"""The progress bar: tqdm's, chosen as ``tqdm.auto`` chooses it (a widget in Jupyter, text
elsewhere) but without ``tqdm.auto``'s import of :mod:`asyncio` for its async iterator, which
cost every command ~50 ms of start-up."""

import warnings

from tqdm.std import TqdmExperimentalWarning

with warnings.catch_warnings():  # as tqdm.auto imports it
    warnings.simplefilter("ignore", category=TqdmExperimentalWarning)
    from tqdm.autonotebook import tqdm

__all__ = ["tqdm"]
