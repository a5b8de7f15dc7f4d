"""Queries on learned word vectors (the sequel's chapters 2–4): cosine similarity, nearest
neighbours and analogies, on the host in NumPy.

``vectors`` is a ``(V, H)`` array, one row per word id (e.g.
:func:`fnnet.nets.word2vec.word_vectors` of trained params); ``word_to_id`` and
``id_to_word`` are the corpus's (:class:`fnnet.data.Corpus`, :func:`fnnet.data.preprocess`).
An unknown word raises ``KeyError`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fnnet._checks import check_int

EPS = 1e-8
"""The book's ε in ``x / (‖x‖ + ε)``: a zero vector has similarity 0, not NaN."""


def normalize(vectors: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Each row (or a single vector) divided by ``‖row‖ + eps``, in float64."""
    vectors = np.asarray(vectors, np.float64)
    return vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + eps)


def cos_similarity(x: np.ndarray, y: np.ndarray, eps: float = EPS) -> float:
    """The book's ``cos_similarity``: ``x·y / ((‖x‖ + ε)(‖y‖ + ε))``.

    >>> round(cos_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 4)
    0.7071
    """
    return float(normalize(x, eps) @ normalize(y, eps))


def _id(word: str, word_to_id: Mapping[str, int]) -> int:
    if word not in word_to_id:
        raise KeyError(f"{word!r} is not in the vocabulary ({len(word_to_id)} words)")
    return word_to_id[word]


def _top(scores: np.ndarray, id_to_word: Sequence[str], exclude: Sequence[int],
         top: int) -> list[tuple[str, float]]:
    scores = scores.copy()
    scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[: check_int("top", top)]
    return [(id_to_word[i], float(scores[i])) for i in order if np.isfinite(scores[i])]


def most_similar(query: str, word_to_id: Mapping[str, int], id_to_word: Sequence[str],
                 vectors: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
    """The ``top`` words nearest to ``query`` by cosine similarity, the query itself left out
    (the book's ``most_similar``): ``[(word, similarity), …]``, most similar first."""
    vectors = normalize(vectors)
    q = _id(query, word_to_id)
    return _top(vectors @ vectors[q], id_to_word, [q], top)


def analogy(a: str, b: str, c: str, word_to_id: Mapping[str, int],
            id_to_word: Sequence[str], vectors: np.ndarray, top: int = 5, *,
            normalize_rows: bool = True) -> list[tuple[str, float]]:
    """``a : b = c : ?`` — the words ``d`` whose vectors best match ``b − a + c`` (the book's
    ``analogy``; e.g. ``king : man = queen : woman``), ``a``, ``b``, ``c`` left out.

    The query ``b − a + c`` is normalised; each word is scored by its cosine with it
    (``normalize_rows=True``, the usual "3CosAdd"), or, as the book's code does, by the dot
    product of its raw vector with the normalised query (``normalize_rows=False``, which
    favours long vectors).
    """
    ids = [_id(word, word_to_id) for word in (a, b, c)]
    table = np.asarray(vectors, np.float64)
    query = normalize(table[ids[1]] - table[ids[0]] + table[ids[2]])
    scores = (normalize(table) if normalize_rows else table) @ query
    return _top(scores, id_to_word, ids, top)
