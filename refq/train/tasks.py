"""Built-in deterministic tasks, generated from a seed (no downloads).

Seq2seq (shared vocabulary: <pad> <bos> <eos> 0..9 +):
    reverse   "3 1 4" -> "4 1 3"              lengths uniform in [min_len, max_len]
    sort      "3 1 4" -> "1 3 4"              same lengths
    addition  "0 4 7 + 1 2 5" -> "0 1 7 2"    operands zero-padded to ``digits``, sum to digits+1
Classification (vocabulary <pad> <bos> <eos> a b c d):
    majority  "a c c b c" -> class of "c"     the most frequent symbol (ties are never generated)

Held-out split: a sequence belongs to the test split iff a hash of its source tokens is 0 mod 10
(``in_test_split``). Training batches reject test sequences and held-out batches reject training
ones, so evaluation is on sequences never seen in training, whatever the seeds.

Layout of a seq2seq ``Batch``: ``src`` (B, S) padded with <pad>; ``tgt_out`` (B, T) the target
followed by <eos> then <pad>; ``tgt_in`` (B, T) = <bos> followed by ``tgt_out[:, :-1]`` (teacher
forcing). A classification ``Batch`` has ``src`` and ``labels`` (B,).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<bos>", "<eos>"]
DIGITS = [str(d) for d in range(10)]
TEST_MODULUS = 10  # 1 sequence in 10 (by hash) is held out


@dataclass
class Batch:
    """One batch of integer arrays (int64); see the module docstring for the layout."""

    src: np.ndarray
    tgt_in: np.ndarray | None = None
    tgt_out: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def slice(self, index: slice) -> Batch:
        """The rows ``index`` of every array (views)."""
        return _select(self, index)


def sequence_hash(src: np.ndarray) -> np.ndarray:
    """64-bit hash of each row of ``src`` (B, S): polynomial in the tokens, murmur3 finaliser.

    >>> h = sequence_hash(np.array([[3, 4, 0], [3, 4, 0], [4, 3, 0]]))
    >>> bool(h[0] == h[1]), bool(h[0] == h[2])
    (True, False)
    """
    s = src.astype(np.uint64)
    powers = np.uint64(1000003) ** np.arange(1, s.shape[1] + 1, dtype=np.uint64)  # wraps mod 2^64
    h = (s * powers).sum(axis=1, dtype=np.uint64) + np.uint64(s.shape[1])  # (B, S) -> (B,)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


def in_test_split(src: np.ndarray) -> np.ndarray:
    """(B,) bool: True for rows that belong to the held-out split."""
    return sequence_hash(src) % np.uint64(TEST_MODULUS) == 0


class Task:
    """Base class: subclasses set ``name``, ``kind``, ``vocab`` and implement ``_generate``."""

    name: str = ""
    kind: str = "seq2seq"  # or "classification"
    vocab: list[str] = []
    n_classes: int = 0
    class_names: list[str] = []
    max_src_len: int = 0
    max_tgt_len: int = 0  # target length including <eos>

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def params(self) -> dict[str, Any]:
        """Constructor arguments (stored in checkpoints to rebuild the task)."""
        return {}

    def _generate(self, n: int, rng: np.random.Generator) -> Batch:
        raise NotImplementedError(f"abstract: {type(self).__name__} must define _generate")

    def sample(self, n: int, rng: np.random.Generator, split: str = "train") -> Batch:
        """``n`` examples of ``split`` ("train" or "test"), drawn from ``rng``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if n <= 0:
            raise ValueError(f"number of examples must be positive, got {n}")
        parts: list[Batch] = []
        have = 0
        for _ in range(1000):
            want = (n - have) * (TEST_MODULUS + 2) if split == "test" else (n - have) * 5 // 4 + 8
            b = self._generate(want, rng)
            keep = in_test_split(b.src) == (split == "test")
            parts.append(_select(b, keep))
            have += int(keep.sum())
            if have >= n:
                break
        else:  # pragma: no cover - only for a degenerate task
            raise RuntimeError(f"task {self.name}: could not draw {n} {split} examples")
        return _select(_concat(parts), slice(0, n))

    def batches(
        self, batch_size: int, n_batches: int | None = None, seed: int = 0, split: str = "train"
    ) -> Iterator[Batch]:
        """Yield ``n_batches`` batches (forever if None) from a generator seeded with ``seed``.
        Also the source of PTQ calibration data: ``task.batches(32, 4, seed=1)``."""
        rng = np.random.default_rng(seed)
        i = 0
        while n_batches is None or i < n_batches:
            yield self.sample(batch_size, rng, split)
            i += 1

    def heldout(self, n: int = 1000, seed: int = 1234) -> Batch:
        """``n`` held-out examples (never produced by ``batches(split="train")``)."""
        return self.sample(n, np.random.default_rng(seed), "test")

    def encode(self, text: str) -> np.ndarray:
        """Space-separated symbols -> token ids. ``get_task("reverse").encode("1 2")`` -> [4 5]."""
        index = {s: i for i, s in enumerate(self.vocab)}
        try:
            return np.array([index[t] for t in text.split()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"symbol {e.args[0]!r} is not in the {self.name} vocabulary") from None

    def decode(self, ids: np.ndarray) -> str:
        """Token ids -> text, stopping at <eos> and dropping <pad>/<bos>."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.vocab[i])
        return " ".join(out)


def lm_sequences(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """A seq2seq batch as decoder-only LM data: z = [src | <bos> | tgt_out] (B, S + 1 + T),
    inputs = z[:, :-1], labels = z[:, 1:] with the source part set to <pad> (not predicted), so
    the loss covers exactly the target tokens and <eos>, as in the seq2seq model.

    >>> b = Batch(np.array([[5, 6, 0]]), tgt_out=np.array([[6, 5, 2, 0]]))
    >>> x, y = lm_sequences(b)
    >>> x.tolist(), y.tolist()
    ([[5, 6, 0, 1, 6, 5, 2]], [[0, 0, 0, 6, 5, 2, 0]])
    """
    if batch.tgt_out is None:
        raise ValueError("lm_sequences needs a seq2seq batch (with tgt_out)")
    b, s = batch.src.shape
    bos = np.full((b, 1), BOS, dtype=np.int64)
    z = np.concatenate([batch.src, bos, batch.tgt_out], axis=1)  # (B, S + 1 + T)
    labels = z[:, 1:].copy()
    labels[:, :s] = PAD  # positions 0..S-1 would predict source tokens: ignored
    return z[:, :-1], labels


def _select(b: Batch, idx: Any) -> Batch:
    return Batch(*(None if a is None else a[idx] for a in (b.src, b.tgt_in, b.tgt_out, b.labels)))


def _concat(parts: list[Batch]) -> Batch:
    def cat(field: str) -> np.ndarray | None:
        arrays = [getattr(p, field) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    return Batch(cat("src"), cat("tgt_in"), cat("tgt_out"), cat("labels"))


def _teacher_forcing(tgt: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tgt (B, T-1) padded targets of given lengths -> (tgt_in, tgt_out), both (B, T)."""
    b, t = tgt.shape
    tgt_out = np.full((b, t + 1), PAD, dtype=np.int64)
    tgt_out[:, :t] = tgt
    tgt_out[np.arange(b), lengths] = EOS
    tgt_in = np.empty_like(tgt_out)
    tgt_in[:, 0] = BOS
    tgt_in[:, 1:] = tgt_out[:, :-1]
    tgt_in[tgt_in == EOS] = PAD  # the <eos> is never an input
    return tgt_in, tgt_out


class _DigitTask(Task):
    vocab = SPECIALS + DIGITS + ["+"]
    digit0 = len(SPECIALS)  # id of "0"

    def __init__(self, min_len: int = 3, max_len: int = 10) -> None:
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.min_len, self.max_len = int(min_len), int(max_len)
        self.max_src_len, self.max_tgt_len = self.max_len, self.max_len + 1

    def params(self) -> dict[str, Any]:
        return {"min_len": self.min_len, "max_len": self.max_len}

    def _random_digits(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        lengths = rng.integers(self.min_len, self.max_len + 1, size=n)
        src = rng.integers(self.digit0, self.digit0 + 10, size=(n, self.max_len))
        pos = np.arange(self.max_len)[None, :]  # (1, S)
        src[pos >= lengths[:, None]] = PAD
        return src.astype(np.int64), lengths


class ReverseTask(_DigitTask):
    """Output the input digits in reverse order."""

    name = "reverse"

    def _generate(self, n: int, rng: np.random.Generator) -> Batch:
        src, lengths = self._random_digits(n, rng)
        pos = np.arange(self.max_len)[None, :]
        idx = np.clip(lengths[:, None] - 1 - pos, 0, None)  # (B, S): source index of each output
        tgt = np.where(pos < lengths[:, None], np.take_along_axis(src, idx, 1), PAD)
        return Batch(src, *_teacher_forcing(tgt, lengths))


class SortTask(_DigitTask):
    """Output the input digits sorted in ascending order."""

    name = "sort"

    def _generate(self, n: int, rng: np.random.Generator) -> Batch:
        src, lengths = self._random_digits(n, rng)
        big = np.iinfo(np.int64).max
        tgt = np.sort(np.where(src == PAD, big, src), axis=1)  # pads sort last
        tgt[tgt == big] = PAD
        return Batch(src, *_teacher_forcing(tgt, lengths))


class AdditionTask(Task):
    """a + b with ``digits``-digit operands (zero-padded): src "a_1..a_d + b_1..b_d" (2d + 1
    tokens), target the d + 1 digits of the sum, most significant first (zero-padded)."""

    name = "addition"
    vocab = SPECIALS + DIGITS + ["+"]

    def __init__(self, digits: int = 3) -> None:
        if not 1 <= digits <= 9:
            raise ValueError(f"digits must be in [1, 9], got {digits}")
        self.digits = int(digits)
        self.max_src_len, self.max_tgt_len = 2 * digits + 1, digits + 2

    def params(self) -> dict[str, Any]:
        return {"digits": self.digits}

    def _digits_of(self, x: np.ndarray, width: int) -> np.ndarray:
        powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)  # (W,) most significant first
        return (x[:, None] // powers[None, :]) % 10 + len(SPECIALS)  # (B,) -> (B, W) token ids

    def _generate(self, n: int, rng: np.random.Generator) -> Batch:
        d = self.digits
        a = rng.integers(0, 10**d, size=n, dtype=np.int64)
        b = rng.integers(0, 10**d, size=n, dtype=np.int64)
        plus = np.full((n, 1), self.vocab.index("+"), dtype=np.int64)
        src = np.concatenate([self._digits_of(a, d), plus, self._digits_of(b, d)], axis=1)
        tgt = self._digits_of(a + b, d + 1)
        return Batch(src, *_teacher_forcing(tgt, np.full(n, d + 1)))


class MajorityTask(Task):
    """Classify a sequence of symbols a b c d by its most frequent symbol (4 classes)."""

    name = "majority"
    kind = "classification"
    vocab = SPECIALS + ["a", "b", "c", "d"]
    class_names = ["a", "b", "c", "d"]
    n_classes = 4

    def __init__(self, min_len: int = 5, max_len: int = 16) -> None:
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.min_len, self.max_len = int(min_len), int(max_len)
        self.max_src_len = self.max_len

    def params(self) -> dict[str, Any]:
        return {"min_len": self.min_len, "max_len": self.max_len}

    def _generate(self, n: int, rng: np.random.Generator) -> Batch:
        lengths = rng.integers(self.min_len, self.max_len + 1, size=n)
        sym = rng.integers(0, 4, size=(n, self.max_len))
        valid = np.arange(self.max_len)[None, :] < lengths[:, None]  # (B, S)
        counts = ((sym[:, :, None] == np.arange(4)) & valid[:, :, None]).sum(axis=1)  # (B, 4)
        top = counts.max(axis=1, keepdims=True)
        unique = (counts == top).sum(axis=1) == 1  # reject ties
        src = np.where(valid, sym + len(SPECIALS), PAD).astype(np.int64)
        return _select(Batch(src, labels=counts.argmax(axis=1).astype(np.int64)), unique)


TASKS: dict[str, type[Task]] = {
    "reverse": ReverseTask,
    "sort": SortTask,
    "addition": AdditionTask,
    "majority": MajorityTask,
}


def get_task(name: str, **params: Any) -> Task:
    """Build a task by name with optional constructor arguments.

    >>> t = get_task("reverse", min_len=2, max_len=4)
    >>> b = next(t.batches(2, 1, seed=0)); t.decode(b.src[0]), t.decode(b.tgt_out[0])
    ('6 9 5 6', '6 5 9 6')
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    try:
        return TASKS[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for task {name!r}: {e}") from None
