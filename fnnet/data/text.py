"""Text as word ids, and the (contexts, target) pairs word2vec learns from (the sequel's
chapters 2–3: its ``preprocess`` and ``create_contexts_target``).

A corpus is a 1-D integer array of word ids, one token after another (a
:class:`fnnet.data.Corpus` split, or :func:`preprocess` of a string).
"""

from __future__ import annotations

import numpy as np

from fnnet._checks import check_int

TOY_TEXT = "You say goodbye and I say hello."
"""The sequel's running example (chapters 2–4): 8 tokens, 7 words."""


def preprocess(text: str) -> tuple[np.ndarray, dict[str, int], tuple[str, ...]]:
    """The book's tokens and ids of a text: lower case, ``.`` split off as a word, split on
    spaces; ids by first appearance.

    Returns ``(corpus int32 (T,), word_to_id, id_to_word)``.

    >>> corpus, word_to_id, id_to_word = preprocess(TOY_TEXT)
    >>> corpus.tolist(), id_to_word[1]
    ([0, 1, 2, 3, 4, 1, 5, 6], 'say')
    """
    if not isinstance(text, str):
        raise TypeError(f"preprocess: text must be a str; got {type(text).__name__}")
    words = text.lower().replace(".", " .").split()
    word_to_id: dict[str, int] = {}
    for word in words:
        word_to_id.setdefault(word, len(word_to_id))
    return (np.array([word_to_id[w] for w in words], np.int32), word_to_id,
            tuple(word_to_id))


def create_contexts_target(corpus: np.ndarray,
                           window_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every position of ``corpus`` with a full window as ``(contexts, target)`` (the book's
    ``create_contexts_target``).

    With ``w = window_size`` and ``T = len(corpus)``, example ``n`` (``n = 0 … T − 2w − 1``)
    is the word at position ``i = n + w``: ``target[n] = corpus[i]`` and ``contexts[n] =
    (corpus[i − w], …, corpus[i − 1], corpus[i + 1], …, corpus[i + w])`` — the ``2w`` words
    around it, left to right. The first and last ``w`` words are never targets, as in the
    book.

    Args:
      corpus: 1-D integer word ids.
      window_size: words on each side, ``w ≥ 1``; ``T > 2w`` is needed.

    Returns:
      ``contexts`` int32 ``(T − 2w, 2w)`` and ``target`` int32 ``(T − 2w,)``.

    >>> contexts, target = create_contexts_target(np.array([0, 1, 2, 3, 4, 1, 5, 6]))
    >>> contexts[:2].tolist(), target[:2].tolist()
    ([[0, 2], [1, 3]], [1, 2])
    """
    window_size = check_int("window_size", window_size)
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer):
        raise ValueError(f"create_contexts_target: corpus must be 1-D integer word ids; got "
                         f"shape {corpus.shape}, dtype {corpus.dtype}")
    if len(corpus) <= 2 * window_size:
        raise ValueError(f"create_contexts_target: a window of {window_size} on each side needs "
                         f"more than {2 * window_size} tokens; the corpus has {len(corpus)}")
    count = len(corpus) - 2 * window_size
    offsets = [d for d in range(-window_size, window_size + 1) if d != 0]
    contexts = np.stack([corpus[window_size + d: window_size + d + count] for d in offsets],
                        axis=1)
    return contexts.astype(np.int32), corpus[window_size: window_size + count].astype(np.int32)
