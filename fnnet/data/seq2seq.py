"""The sequel's seq2seq data sets (its chapters 7–8), generated here from a seed: nothing to
download.

* ``addition``: ``a+b`` with ``a, b ∈ [0, 999]`` (each operand's number of digits drawn
  uniformly from 1–3, then its digits, so short sums are as common as in the book's
  ``addition.txt``; no question twice, and never both ``a+b`` and ``b+a``); a question is
  padded with spaces to 7 characters (``"582+84 "``), its answer is ``_`` and the sum padded
  to 5 characters in all (``"_666 "``).
* ``date``: a day between 1970-01-01 and 2029-12-31 written in one of the book's human forms
  — ``2/10/93`` (M/d/yy), ``Jun 17, 2013``, ``September 27, 1994``, ``Tuesday, September 25,
  1984``, ``27 September 1994``, ``27.09.94`` — in lower, title or upper case (``september
  27, 1994``, ``TUESDAY, SEPTEMBER 25, 1984``), padded to 29 characters, paired with ``_`` and
  its ISO date (``"_1994-09-27"``, 11 characters). Two-digit years are 1970–2029
  (``70``–``99`` → 19xx, ``00``–``29`` → 20xx), so every question has one answer. No question
  twice.

Both are 50 000 pairs by default, the first 45 000 for training and the last 5 000 for the
test (the draws are in random order already). Characters become ids through a
:class:`Vocabulary` of every character the generator can write (sorted), so the ids do not
depend on the draw. The answer's first character ``_`` is the decoder's start symbol
(:attr:`Seq2seqData.start_id`): the labels ``t`` are the characters after it. ``reverse``
reverses each padded question, the book's trick (its padding then comes first).

>>> data = load_seq2seq("addition", size=100)
>>> data.x_train.shape, data.t_train.shape, len(data.vocab)
((90, 7), (90, 4), 13)
>>> data.question(data.x_train[0]), data.answer(data.t_train[0])
('6+399  ', '405 ')
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fnnet._checks import check_int

SEQ2SEQ_DATASETS = ("addition", "date")
START = "_"
PAD = " "
QUESTION_LENGTHS = {"addition": 7, "date": 29}
"""Characters of a padded question (the book's: ``999+999`` and ``wednesday, september 28,
1994`` are the longest)."""
ANSWER_LENGTHS = {"addition": 5, "date": 11}
"""Characters of an answer, the start symbol ``_`` included (``_1998``, ``_1994-09-27``)."""
DEFAULT_SEED = 1984
DEFAULT_SIZE = 50_000

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FIRST_DAY = datetime.date(1970, 1, 1)
_LAST_DAY = datetime.date(2029, 12, 31)
DATE_FORMATS = ("M/d/yy", "MMM d, y", "MMMM d, y", "EEEE, MMMM d, y", "d MMMM y", "dd.MM.yy")
"""The human forms of a date (CLDR pattern letters: M month, MMM its short name, MMMM its
name, d day, dd two-digit day, y year, yy two-digit year, EEEE weekday)."""
CASES = ("lower", "title", "upper")
_CHUNK = 4096  # draws per round: a smaller set is the start of a larger one (same seed)


class Vocabulary(NamedTuple):
    """Characters and their ids: ``chars[i]`` is the character of id ``i``."""

    chars: str

    def __len__(self) -> int:
        return len(self.chars)

    def ids(self, text: str) -> np.ndarray:
        """The ids of ``text``'s characters, int32 (a ``ValueError`` names any character not
        in the vocabulary)."""
        table = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in text if c not in table})
        if unknown:
            raise ValueError(f"{text!r} has characters outside the vocabulary "
                             f"{self.chars!r}: {''.join(unknown)!r}")
        return np.array([table[c] for c in text], np.int32)

    def encode_all(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Strings of ``length`` characters each, all from the vocabulary, as ids
        ``(len(texts), length)`` int32 (a table lookup over their bytes)."""
        table = np.full(256, -1, np.int32)
        table[np.frombuffer(self.chars.encode("latin-1"), np.uint8)] = np.arange(len(self))
        raw = np.frombuffer("".join(texts).encode("latin-1"), np.uint8)
        ids = table[raw].reshape(len(texts), length)
        if (ids < 0).any():
            raise ValueError(f"texts have characters outside the vocabulary {self.chars!r}")
        return ids

    def text(self, ids: Sequence[int] | np.ndarray) -> str:
        """The characters of ``ids``."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


VOCABULARIES = {
    "addition": Vocabulary("".join(sorted(PAD + START + "+0123456789"))),
    "date": Vocabulary("".join(sorted(set(
        PAD + START + "0123456789-/.," + "".join(_MONTHS + _WEEKDAYS)
        + "".join(_MONTHS + _WEEKDAYS).upper())))),
}
"""Every character each generator writes, sorted: ``addition`` has 13, ``date`` 60."""


class Seq2seqData(NamedTuple):
    """A seq2seq data set as host arrays of character ids (what :func:`fnnet.train.fit`
    takes: ``x_*``, ``t_*``).

    ``x_*``: int32 ``(N, question_length)``, the padded questions (reversed when
    ``reverse``); ``t_*``: int32 ``(N, answer_length − 1)``, each answer after its start
    symbol ``_`` (the decoder starts from ``start_id`` and must write these). ``vocab`` maps
    ids to characters; ``files`` describes the source, as :class:`fnnet.data.Dataset` does.
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    vocab: Vocabulary
    reverse: bool
    files: tuple[str, ...] = ()

    @property
    def start_id(self) -> int:
        """The id of the start symbol ``_``."""
        return self.vocab.chars.index(START)

    @property
    def question_length(self) -> int:
        return self.x_train.shape[1]

    @property
    def answer_length(self) -> int:
        """Characters the decoder writes (the answer without its start symbol)."""
        return self.t_train.shape[1]

    def question(self, ids: np.ndarray) -> str:
        """The question written by ``ids`` (one row of ``x_*``), un-reversed, padding kept."""
        ids = np.asarray(ids)
        return self.vocab.text(ids[::-1] if self.reverse else ids)

    def answer(self, ids: np.ndarray) -> str:
        """The answer written by ``ids`` (one row of ``t_*`` or of a generation)."""
        return self.vocab.text(ids)

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Questions of one's own as the model takes them: ``(len(questions),
        question_length)`` int32, padded and reversed as the data set's (see
        :func:`encode_questions`)."""
        return encode_questions(questions, self.vocab, self.question_length,
                                reverse=self.reverse)


def encode_questions(questions: Sequence[str], vocab: Vocabulary, length: int, *,
                     reverse: bool = False) -> np.ndarray:
    """``questions`` as ids: each padded with spaces to ``length`` characters, then reversed
    when ``reverse``; int32 ``(len(questions), length)``.

    Raises ``ValueError`` (one line, naming the question) for an empty or blank question, one
    longer than ``length``, or a character outside ``vocab``.
    """
    if isinstance(questions, str):
        questions = [questions]
    rows = []
    for question in questions:
        if not question.strip():
            raise ValueError(f"question {question!r} is empty")
        if len(question) > length:
            raise ValueError(f"question {question!r} has {len(question)} characters; at most "
                             f"{length} fit")
        unknown = sorted({c for c in question if c not in vocab.chars})
        if unknown:
            raise ValueError(f"question {question!r} has characters outside the vocabulary "
                             f"{vocab.chars!r}: {''.join(unknown)!r}")
        ids = vocab.ids(question.ljust(length, PAD))
        rows.append(ids[::-1] if reverse else ids)
    if not rows:
        raise ValueError("no questions given")
    return np.stack(rows)


# --- the generators ------------------------------------------------------------------------


def _operands(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` numbers in [0, 999]: the number of digits uniform in 1–3, then each digit."""
    digits = rng.integers(1, 4, count)
    return rng.integers(0, 10 ** digits)


def addition_pairs(size: int = DEFAULT_SIZE, *,
                   seed: int = DEFAULT_SEED) -> tuple[list[str], list[str]]:
    """``size`` distinct addition problems as ``(questions, answers)`` strings, padded
    (``"582+84 "``, ``"_666 "``), in the order drawn by ``np.random.default_rng(seed)``
    (the first ``k`` of a larger ``size`` are the set of size ``k``).

    A pair is kept only the first time it is drawn, in either order (``a+b`` or ``b+a``):
    there are 500 500 such pairs.
    """
    size = check_int("size", size)
    if size > 500_500:
        raise ValueError(f"size must be at most 500500 (the distinct pairs a+b with a, b in "
                         f"[0, 999]); got {size}")
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    questions: list[str] = []
    answers: list[str] = []
    while len(questions) < size:
        for a, b in zip(_operands(rng, _CHUNK).tolist(), _operands(rng, _CHUNK).tolist(),
                        strict=True):
            key = (min(a, b), max(a, b))
            if key in seen:
                continue
            seen.add(key)
            questions.append(f"{a}+{b}".ljust(QUESTION_LENGTHS["addition"], PAD))
            answers.append((START + str(a + b)).ljust(ANSWER_LENGTHS["addition"], PAD))
            if len(questions) == size:
                break
    return questions, answers


def write_date(day: datetime.date, form: str, case: str = "title") -> str:
    """``day`` in the human form ``form`` (one of :data:`DATE_FORMATS`) and ``case``
    (``"lower"``, ``"title"``, ``"upper"``).

    >>> write_date(datetime.date(1984, 9, 25), "EEEE, MMMM d, y", "upper")
    'TUESDAY, SEPTEMBER 25, 1984'
    >>> write_date(datetime.date(1993, 2, 10), "M/d/yy")
    '2/10/93'
    """
    month, weekday = _MONTHS[day.month - 1], _WEEKDAYS[day.weekday()]
    parts = {"M": str(day.month), "MM": f"{day.month:02d}", "MMM": month[:3], "MMMM": month,
             "d": str(day.day), "dd": f"{day.day:02d}", "y": str(day.year),
             "yy": f"{day.year % 100:02d}", "EEEE": weekday}
    if form not in DATE_FORMATS:
        raise ValueError(f"form must be one of {DATE_FORMATS}; got {form!r}")
    if case not in CASES:
        raise ValueError(f"case must be one of {CASES}; got {case!r}")
    text, token = [], ""
    for char in form + "\0":
        if token and char != token[0]:
            text.append(parts[token])
            token = ""
        if char.isalpha():
            token += char
        elif char != "\0":
            text.append(char)
    written = "".join(text)
    return {"lower": written.lower(), "title": written.title(), "upper": written.upper()}[case]


def date_pairs(size: int = DEFAULT_SIZE, *,
               seed: int = DEFAULT_SEED) -> tuple[list[str], list[str]]:
    """``size`` distinct dates as ``(questions, answers)`` strings, padded
    (``"september 27, 1994           "``, ``"_1994-09-27"``), in the order drawn by
    ``np.random.default_rng(seed)``: the day uniform in 1970–2029, the form uniform over
    :data:`DATE_FORMATS`, the case uniform over :data:`CASES` (the first ``k`` of a larger
    ``size`` are the set of size ``k``)."""
    size = check_int("size", size)
    days = (_LAST_DAY - _FIRST_DAY).days + 1
    if size > days * len(DATE_FORMATS):
        raise ValueError(f"size must be at most {days * len(DATE_FORMATS)}; got {size}")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    questions: list[str] = []
    answers: list[str] = []
    while len(questions) < size:
        offsets = rng.integers(0, days, _CHUNK).tolist()
        forms = rng.integers(0, len(DATE_FORMATS), _CHUNK).tolist()
        cases = rng.integers(0, len(CASES), _CHUNK).tolist()
        for offset, form, case in zip(offsets, forms, cases, strict=True):
            day = _FIRST_DAY + datetime.timedelta(days=offset)
            question = write_date(day, DATE_FORMATS[form], CASES[case])
            if question in seen:
                continue
            seen.add(question)
            questions.append(question.ljust(QUESTION_LENGTHS["date"], PAD))
            answers.append(START + day.isoformat())
            if len(questions) == size:
                break
    return questions, answers


_GENERATORS = {"addition": addition_pairs, "date": date_pairs}


def load_seq2seq(name: str, *, reverse: bool = False, size: int = DEFAULT_SIZE,
                 test_size: int | None = None, seed: int = DEFAULT_SEED) -> Seq2seqData:
    """The generated data set ``name`` (``"addition"`` or ``"date"``) as ids.

    ``size`` pairs (:func:`addition_pairs` / :func:`date_pairs` with ``seed``), the last
    ``test_size`` of them (default ``size // 10``: the book's 45 000 / 5 000) the test set;
    ``reverse`` reverses every question.
    """
    if name not in SEQ2SEQ_DATASETS:
        raise ValueError(f"load_seq2seq: name must be one of {SEQ2SEQ_DATASETS}; got {name!r}")
    size = check_int("size", size, minimum=2)
    test_size = size // 10 if test_size is None else check_int("test_size", test_size)
    if not 1 <= test_size < size:
        raise ValueError(f"test_size must be in [1, {size - 1}] for size {size}; got "
                         f"{test_size}")
    questions, answers = _GENERATORS[name](size, seed=seed)
    vocab = VOCABULARIES[name]
    x = vocab.encode_all(questions, QUESTION_LENGTHS[name])
    if reverse:
        x = x[:, ::-1].copy()
    t = vocab.encode_all([a[1:] for a in answers], ANSWER_LENGTHS[name] - 1)
    cut = size - test_size
    source = f"generated: the sequel's {name} set (load_seq2seq, seed {seed}, {size} pairs)"
    return Seq2seqData(name, x[:cut], t[:cut], x[cut:], t[cut:], vocab, bool(reverse),
                       (source,))
