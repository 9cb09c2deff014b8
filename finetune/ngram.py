"""An n-gram label classifier for MAP: TF-IDF of a response's words and characters, one logistic
regression per answer (question and answer picked), fitted on the label store in seconds.

Why beside the head and the votes: MAP's responses answer 15 questions again and again, and what tells
`Misconception:Incomplete` from `Neither:NA` is often a word or a phrase ("multiply the denominator",
"simplest form") that a frozen sentence vector blurs. A model per answer group learns which words go
with which label for that very answer; alone it ranks as well as the head on frozen vectors and it errs
elsewhere, so the fused score gains (docs/results.md, "MAP: ...").

Features, as scikit-learn's TfidfVectorizer computes them with `sublinear_tf` and L2 rows, two blocks
each normalised apart: word 1-2-grams (`\\b\\w\\w+\\b` tokens, lower-cased) and character 2-5-grams
inside word boundaries (`char_wb`). The analyser is this module's own, so a fitted model runs with
numpy and the standard library (a Kaggle bundle ships it fitted, without scikit-learn); scikit-learn
fits the regressions. Saved as plain arrays (`ngram.npz`, no pickle) and `ngram.json`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

MODEL_FILE, META_FILE = "ngram.npz", "ngram.json"
WORD_RE = re.compile(r"(?u)\b\w\w+\b")
CHAR_SIZES = (2, 5)  # words: 1- and 2-grams (word_ngrams)
MIN_DF = 2  # an n-gram in one training response only weighs nothing a new response can share
C = 3.0  # inverse L2 strength (validation-inner, fused: C 1 / 3 / 10 scored 0.9185 / 0.9203 / 0.9211, alike)


def word_ngrams(text: str) -> list[str]:
    """Lower-cased word 1- and 2-grams, as TfidfVectorizer(ngram_range=(1, 2)) analyses."""
    tokens = WORD_RE.findall(text.lower())
    grams = [f"w {t}" for t in tokens]
    grams += [f"w {a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    return grams


def char_ngrams(text: str) -> list[str]:
    """Character 2- to 5-grams of each space-padded word, as TfidfVectorizer(analyzer='char_wb') analyses:
    a word shorter than n gives itself once."""
    grams = []
    low, high = CHAR_SIZES
    for word in " ".join(text.lower().split()).split(" "):
        if not word:
            continue
        padded = f" {word} "
        for n in range(low, high + 1):
            if len(padded) <= n:
                grams.append(f"c {padded}")
                break
            grams.extend(f"c {padded[i : i + n]}" for i in range(len(padded) - n + 1))
    return grams


def _blocks(text: str) -> tuple[Counter, Counter]:
    return Counter(word_ngrams(text)), Counter(char_ngrams(text))


class NgramClassifier:
    """The fitted model: vocabulary and idf shared, and per answer group the columns it weighs, a weight
    matrix over them and its labels. `predict` gives probabilities over `self.labels` (every label of any
    group; a group's own labels only are non-zero) and a zero row for a group never seen."""

    def __init__(self, vocabulary: list[str], idf: np.ndarray, groups: dict[str, dict], labels: list[str], meta: dict):
        self.vocabulary, self.idf, self.groups, self.labels, self.meta = vocabulary, idf, groups, labels, meta
        self.column = {gram: n for n, gram in enumerate(vocabulary)}

    def features(self, text: str) -> dict[int, float]:
        """column -> TF-IDF value: (1 + log tf) * idf, each block (words, characters) L2-normalised."""
        out: dict[int, float] = {}
        for counts in _blocks(text):
            columns = {self.column[g]: tf for g, tf in counts.items() if g in self.column}
            block = {col: (1.0 + math.log(tf)) * float(self.idf[col]) for col, tf in columns.items()}
            norm = math.sqrt(sum(v * v for v in block.values())) or 1.0
            out.update({col: v / norm for col, v in block.items()})
        return out

    def predict(self, texts: list[str], groups: list[str]) -> np.ndarray:
        """Probabilities, one row per (text, answer group), columns in `self.labels` order."""
        index = {label: n for n, label in enumerate(self.labels)}
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for row, (text, group) in enumerate(zip(texts, groups, strict=True)):
            model = self.groups.get(group)
            if model is None:
                continue
            columns = [index[label] for label in model["labels"]]
            if model["weights"] is None:  # a group whose training responses all carry one label
                probs[row, columns[0]] = 1.0
                continue
            position = model["position"]
            x = np.zeros(len(model["columns"]), dtype=np.float32)
            for col, value in self.features(text).items():
                if (at := position.get(col)) is not None:
                    x[at] = value
            logits = model["weights"] @ x + model["bias"]
            if len(logits) == 1:  # binary: scikit-learn keeps one row, the second label's logit
                logits = np.array([0.0, float(logits[0])])
            logits -= logits.max()
            p = np.exp(logits)
            probs[row, columns] = p / p.sum()
        return probs

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = sorted(self.groups)
        fitted = [self.groups[g] for g in names]
        weights = [m["weights"] if m["weights"] is not None else np.zeros((0, 0), np.float32) for m in fitted]
        np.savez(
            folder / MODEL_FILE,
            vocabulary=np.array(self.vocabulary, dtype=str),
            idf=self.idf.astype(np.float32),
            labels=np.array(self.labels, dtype=str),
            groups=np.array(names, dtype=str),
            group_labels=np.array(["\t".join(m["labels"]) for m in fitted], dtype=str),
            column_counts=np.array([len(m["columns"]) for m in fitted], dtype=np.int64),
            columns=np.concatenate([m["columns"] for m in fitted]).astype(np.int32),
            row_counts=np.array([w.shape[0] for w in weights], dtype=np.int64),
            weights=np.concatenate([w.ravel() for w in weights]).astype(np.float32),
            bias=np.concatenate([m["bias"] for m in fitted]).astype(np.float32),
        )
        (folder / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> NgramClassifier:
        from mcqa.rag.vectors import StoreError

        folder = Path(folder).expanduser()
        if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
            raise StoreError(f"{folder} is not a fitted n-gram classifier: no {MODEL_FILE} and {META_FILE}")
        with np.load(folder / MODEL_FILE, allow_pickle=False) as npz:
            a = {key: npz[key] for key in npz.files}  # each read of an NpzFile key unpacks it again: once each
        groups, col_at, w_at, b_at = {}, 0, 0, 0
        for name, labels, n_cols, n_rows in zip(
            a["groups"], a["group_labels"], a["column_counts"], a["row_counts"], strict=True
        ):
            labels, n_cols, n_rows = str(labels).split("\t"), int(n_cols), int(n_rows)
            columns = a["columns"][col_at : col_at + n_cols]
            weights = a["weights"][w_at : w_at + n_rows * n_cols].reshape(n_rows, n_cols) if n_rows else None
            groups[str(name)] = _group(labels, columns, weights, a["bias"][b_at : b_at + n_rows])
            col_at, w_at, b_at = col_at + n_cols, w_at + n_rows * n_cols, b_at + n_rows
        meta = json.loads((folder / META_FILE).read_text())
        return cls([str(x) for x in a["vocabulary"]], a["idf"], groups, [str(x) for x in a["labels"]], meta)


def _group(labels: list[str], columns: np.ndarray, weights: np.ndarray | None, bias: np.ndarray) -> dict:
    return {
        "labels": labels,
        "columns": columns,
        "position": {int(c): n for n, c in enumerate(columns)},
        "weights": weights,
        "bias": bias,
    }


def fit_ngram(texts: list[str], groups: list[str], labels: list[str], meta: dict, C: float = C) -> NgramClassifier:
    """TF-IDF over every text (vocabulary: n-grams in at least MIN_DF of them), then one logistic
    regression per answer group on the columns its own texts use."""
    from mcqa.extras import require

    require("sklearn", "retrieval", "fitting the n-gram classifier (`ngram: auto`)")
    from scipy.sparse import csr_matrix
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(set(labels)) < 2:
        raise ValueError(f"a classifier needs at least 2 labels, the training answers have {len(set(labels))}")
    counted = [_blocks(t) for t in texts]
    df: Counter = Counter()
    for words, chars in counted:
        df.update(words.keys())
        df.update(chars.keys())
    vocabulary = sorted(g for g, n in df.items() if n >= MIN_DF)
    idf = np.array([math.log((1 + len(texts)) / (1 + df[g])) + 1.0 for g in vocabulary], dtype=np.float32)
    model = NgramClassifier(vocabulary, idf, {}, sorted(set(labels)), meta)
    rows, cols, values = [], [], []
    for n, text in enumerate(texts):
        for col, value in model.features(text).items():
            rows.append(n)
            cols.append(col)
            values.append(value)
    matrix = csr_matrix((values, (rows, cols)), shape=(len(texts), len(vocabulary)), dtype=np.float32)
    members: dict[str, list[int]] = {}
    for n, group in enumerate(groups):
        members.setdefault(group, []).append(n)
    for group, at in members.items():
        ys = [labels[n] for n in at]
        if len(set(ys)) < 2:
            model.groups[group] = _group([ys[0]], np.zeros(0, np.int32), None, np.zeros(0, np.float32))
            continue
        sub = matrix[at]
        columns = np.unique(sub.indices).astype(np.int32)
        regression = LogisticRegression(C=C, max_iter=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            regression.fit(sub[:, columns], ys)
        model.groups[group] = _group(
            [str(c) for c in regression.classes_],
            columns,
            regression.coef_.astype(np.float32),
            regression.intercept_.astype(np.float32),
        )
    return model


def load_or_fit_ngram(store) -> NgramClassifier:
    """An n-gram classifier fitted on a label store's records (their texts, answer groups and labels),
    cached under the store's content, so a run fits it once."""
    from mcqa.rag.cache import indexes_dir, load_or_build

    def fit() -> NgramClassifier:
        meta = {"dataset": store.source.get("dataset"), "fitted_on": "label store", "fit_answers": len(store)}
        return fit_ngram(
            [r["text"] for r in store.records],
            [r["group"] for r in store.records],
            [r["label"] for r in store.records],
            meta,
        )

    content = store.source.get("items_sha256")
    if content is None:  # a store built in memory (a Kaggle run on a new train file): nothing to key a cache by
        return fit()
    folder = indexes_dir() / f"ngram-{store.source.get('dataset')}-{content[:16]}-C{C:g}"
    return load_or_build(folder, NgramClassifier.load, fit)
