"""The sequel's chapter 4: CBOW with negative sampling trained on Penn Treebank, then the
book's queries — nearest neighbours by cosine and analogies.

The book's settings: window 5, 100-d vectors, batch 100, 5 negatives per word drawn ∝
count^0.75 (:class:`fnnet.nets.UnigramSampler`), Adam with lr 0.001, 10 epochs, on
``ptb.train.txt``. Where that file is not present (these machines cannot download it) the
run trains on the valid split (73 760 tokens, 8% of train) and says so; the held-out loss
is then on the test split. ``--quick`` trains a few steps on a tiny synthetic corpus (a smoke
run, ``word2vec_quick.*``).

    python experiments/word2vec.py --data-dir /work/shared/data
    python experiments/word2vec.py --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import common
import jax
import numpy as np

from fnnet.data import Corpus, Dataset, DatasetError, create_contexts_target, load_ptb
from fnnet.nets import cbow, unigram_sampler
from fnnet.nets.word2vec import word_vectors
from fnnet.optim import adam
from fnnet.train import fit, init_from_seed
from fnnet.word_vectors import analogy, most_similar

QUERIES = ("you", "year", "car", "toyota")
ANALOGIES = (("king", "man", "queen"), ("take", "took", "go"), ("car", "cars", "child"),
             ("good", "better", "bad"))
"""The book's queries (chapter 4): its expected answers are woman, went, children, worse."""


def synthetic_corpus(seed: int = 0, sentences: int = 400) -> Corpus:
    """A tiny seeded corpus holding the query words (for ``--quick``): sentences
    ``<subject> <verb> the <noun> <eos>`` drawn uniformly from short word lists."""
    subjects = ("you", "i", "we", "king", "queen", "man", "woman", "child", "children")
    verbs = ("take", "took", "go", "went", "see", "want")
    nouns = ("car", "cars", "toyota", "year", "good", "better", "bad", "worse")
    rng = np.random.default_rng(seed)
    words: list[str] = []
    for _ in range(sentences):
        words += [rng.choice(subjects), rng.choice(verbs), "the", rng.choice(nouns), "<eos>"]
    word_to_id: dict[str, int] = {}
    for word in words:
        word_to_id.setdefault(word, len(word_to_id))
    ids = np.array([word_to_id[w] for w in words], np.int32)
    cut = int(0.9 * len(ids))
    return Corpus("synthetic", ids[:cut], None, ids[cut:], word_to_id, tuple(word_to_id),
                  (f"generated: experiments/word2vec.py synthetic_corpus(seed={seed})",), "train")


def load_corpus(args: argparse.Namespace) -> Corpus:
    """PTB's train split when its file is present, else its valid split (never downloads
    unless ``--download``)."""
    if args.quick:
        return synthetic_corpus(args.seed)
    try:
        return load_ptb(data_dir=args.data_dir, download=args.download, train_split="train",
                        progress=False)
    except DatasetError as missing:
        looked = [line.strip() for line in str(missing).splitlines() if line.startswith("  ")]
        print(f"ptb.train.txt is not present (looked in {', '.join(looked)}): training on the "
              f"valid split, held-out loss on the test split")
        return load_ptb(data_dir=args.data_dir, download=args.download, train_split="valid",
                        progress=False)


def queries(corpus: Corpus, vectors: np.ndarray, top: int = 5) -> dict[str, Any]:
    """The book's nearest-neighbour and analogy queries (a missing word is recorded)."""
    result: dict[str, Any] = {"most_similar": {}, "analogy": {}}
    for word in QUERIES:
        try:
            result["most_similar"][word] = most_similar(word, corpus.word_to_id,
                                                        corpus.id_to_word, vectors, top)
        except KeyError as error:
            result["most_similar"][word] = {"missing": str(error)}
    for a, b, c in ANALOGIES:
        try:
            answer = analogy(a, b, c, corpus.word_to_id, corpus.id_to_word, vectors, top)
        except KeyError as error:
            answer = {"missing": str(error)}
        result["analogy"][f"{a}:{b}::{c}:?"] = answer
    return result


def _print_queries(result: dict[str, Any]) -> None:
    for kind in ("most_similar", "analogy"):
        for query, answer in result[kind].items():
            shown = answer if isinstance(answer, dict) else ", ".join(
                f"{w} {s:.3f}" for w, s in answer)
            print(f"  {query:>22}: {shown}")


def projection(corpus: Corpus, vectors: np.ndarray, found: dict[str, Any]) -> dict[str, Any]:
    """2-D PCA of the query words and their 3 nearest neighbours (for the figure)."""
    words: list[str] = []
    for query, answer in found["most_similar"].items():
        if isinstance(answer, list):
            words += [query, *(w for w, _ in answer[:3])]
    words = list(dict.fromkeys(words))
    if len(words) < 2:
        return {"words": words, "xy": []}
    rows = vectors[[corpus.word_to_id[w] for w in words]].astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return {"words": words, "xy": (centred @ vt[:2].T).tolist()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    corpus = load_corpus(args)
    window, hidden = (2, 10) if args.quick else (args.window, args.hidden)
    epochs = 2 if args.quick else args.epochs
    V = corpus.vocabulary_size
    x, t = create_contexts_target(corpus.train, window)
    held_out = corpus.test if corpus.valid is None else corpus.valid
    x_held, t_held = create_contexts_target(held_out[: args.held_out_tokens], window)
    data = Dataset(corpus.name, x, t, x_held, t_held, V, None, corpus.files)
    held_name = "test" if corpus.valid is None else "valid"
    print(f"word2vec: CBOW on {corpus.name} {corpus.train_split} split ({len(corpus.train):,} "
          f"tokens, {V:,} words, {len(x):,} examples), window {window}, {hidden}-d, batch "
          f"{args.batch_size}, Adam lr {args.lr}, {epochs} epochs; held-out: the first "
          f"{len(x_held):,} windows of the {held_name} split")
    net = cbow(V, hidden, window, unigram_sampler(corpus.train, vocabulary_size=V))
    params, key = init_from_seed(net, args.seed)
    begin = time.perf_counter()
    params, history = fit(net, params, data, optimizer=adam(args.lr), key=key,
                          batch_size=args.batch_size, epochs=epochs,
                          eval_train=min(args.eval_train, len(x)), progress=not args.quick,
                          on_epoch=lambda r: print(
                              f"epoch {r['epoch']}: loss {r['loss']:.4f}  held-out loss "
                              f"{r['test_loss']:.4f}  top-1 acc train {r['train_acc']:.4f} / "
                              f"held-out {r['test_acc']:.4f}  {r['steps_per_s']:,.0f} steps/s"))
    wall = time.perf_counter() - begin
    vectors = np.asarray(word_vectors(params))
    found = queries(corpus, vectors)
    _print_queries(found)
    return {
        "settings": {"model": "cbow", "window_size": window, "hidden_size": hidden,
                     "sample_size": 5, "power": 0.75, "batch_size": args.batch_size,
                     "optimizer": "adam", "lr": args.lr, "epochs": epochs, "seed": args.seed,
                     "eval_train": history.train_eval_size},
        "data": {"corpus": corpus.name, "train_split": corpus.train_split,
                 "held_out_split": held_name, "files": list(corpus.files),
                 "train_tokens": len(corpus.train), "vocabulary_size": V,
                 "train_examples": len(x), "held_out_examples": len(x_held),
                 "note": ("ptb.train.txt was not found: trained on the valid split, 8% of "
                          "the train split's tokens (the book trains on train)"
                          if corpus.train_split == "valid" else "the book's training split")},
        "history": history.to_dict(),
        "timing": {"wall_s": wall, "train_s": history.wall_s[-1], "compile_s":
                   history.compile_s, "programs": history.compilations,
                   "device": jax.devices()[0].device_kind},
        "queries": found,
        "projection": projection(corpus, vectors, found),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_words) = plt.subplots(1, 2, figsize=(12, 5))
    h = result["history"]
    ax_loss.plot(h["epoch"], h["loss"], "o-", label="training loss (mean over the epoch)")
    ax_loss.plot(h["epoch"], h["test_loss"], "s--",
                 label=f"held-out loss ({result['data']['held_out_split']} split)")
    ax_loss.set(xlabel="epoch", ylabel="negative-sampling loss (the book's sum of 1 + 5)",
                title=f"CBOW on {result['data']['corpus']} "
                      f"({result['data']['train_split']} split)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    proj = result["projection"]
    if proj["xy"]:
        xy = np.asarray(proj["xy"])
        queries = set(result["queries"]["most_similar"])
        for word, (px, py) in zip(proj["words"], xy, strict=True):
            is_query = word in queries
            ax_words.scatter(px, py, c="C3" if is_query else "C0", s=40 if is_query else 15)
            ax_words.annotate(word, (px, py), fontsize=10 if is_query else 8,
                              fontweight="bold" if is_query else "normal")
    ax_words.set(title="query words (red) and their 3 nearest neighbours, 2-D PCA")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where ptb.*.txt are (else $FNNET_DATA, the cache, ...)")
    p.add_argument("--download", action="store_true", help="allow downloading PTB")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-train", type=int, default=2000,
                   help="training windows evaluated after each epoch (a fixed sample)")
    p.add_argument("--held-out-tokens", type=int, default=20_000,
                   help="the held-out loss is on the windows of this many held-out tokens")
    p.add_argument("--quick", action="store_true", help="smoke run: a tiny synthetic corpus")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    args = p.parse_args(argv)
    common.write("word2vec", args, run(args), plot)


if __name__ == "__main__":
    main()
