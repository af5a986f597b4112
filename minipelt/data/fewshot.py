"""The paper's few-shot protocol, then tokenising and batching.

Protocol (UniPELT section 4.1): permute the training set with the data seed, take the first
K examples to train and the next `dev_size` (1000) as the dev set for checkpoint selection;
the GLUE dev set is the test set. `k=None` ("full") keeps the first `dev_size` of the
permutation as dev and trains on all the rest.

The training file is tokenised once per tokenizer and max length (cached in memory); a seed's
train and dev sets are index selections of it. Batches are padded to their own longest row.
"""
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


def few_shot_indices(n: int, k: int | None, seed: int, dev_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) positions in a training set of n examples; see the module docstring."""
    if k is not None and k < 1:
        raise ValueError(f"k must be a positive number of training examples or None for full, got {k}")
    order = np.random.default_rng(seed).permutation(n)
    if k is None:
        if dev_size >= n:
            raise ValueError(f"full training needs more than the {dev_size} dev examples, but the training set "
                             f"has only {n}; use --dev-size {n - 1} or less")
        return order[dev_size:], order[:dev_size]
    if k + dev_size > n:
        fix = (f"use --k {n - dev_size} or less" if n > dev_size else f"use --dev-size {n - k} or less" if n > k
               else f"use a --k and --dev-size that add up to {n} at most")
        raise ValueError(f"K={k} train + {dev_size} dev examples = {k + dev_size}, but the training set has "
                         f"only {n}; {fix}")
    return order[:k], order[k:k + dev_size]


def few_shot(train, k: int | None, seed: int, dev_size: int = 1000, dev=None):
    """Split a training set (a glue.Split or an EncodedSplit) into the seed's few-shot train and dev sets.
    With a given `dev` set (your own --dev-file), the K train examples are drawn alone and `dev` is kept whole."""
    train_idx, dev_idx = few_shot_indices(len(train), k, seed, 0 if dev is not None else dev_size)
    return train.select(train_idx), dev if dev is not None else train.select(dev_idx)


ENCODED_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass(frozen=True, eq=False)  # numpy labels make field-wise == ambiguous
class EncodedSplit:
    """Tokenised examples, unpadded (one list of ids per example), with their labels. Do not mutate the lists."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    attention_mask: list[list[int]]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, indices) -> "EncodedSplit":
        """The examples at the given integer positions, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        columns = [[getattr(self, key)[i] for i in idx] for key in ENCODED_KEYS]
        return EncodedSplit(*columns, labels=None if self.labels is None else self.labels[idx])


_ENCODED: dict[tuple[str, str, int], tuple[list, list, list]] = {}  # (texts, tokenizer, max length) -> columns


def check_encoding(encoded: dict, n: int, max_length: int) -> None:
    """Catch a tokenizer that breaks the interface here, not as a shape error deep in the model."""
    if missing := [key for key in ENCODED_KEYS if key not in encoded]:
        raise ValueError(f"tokenizer.encode returned no {missing}; it must return {list(ENCODED_KEYS)}")
    for key in ENCODED_KEYS:
        if len(encoded[key]) != n:
            raise ValueError(f"tokenizer.encode returned {len(encoded[key])} {key} for {n} examples")
    for i, (ids, types, mask) in enumerate(zip(*(encoded[key] for key in ENCODED_KEYS))):
        if not len(ids) == len(types) == len(mask) or len(ids) > max_length:
            raise ValueError(f"tokenizer.encode example {i}: lengths {len(ids)}/{len(types)}/{len(mask)} must be "
                             f"equal and at most max_length={max_length}")


def encode_split(split, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise a glue.Split, reusing an earlier result for the same texts, tokenizer and max_length.

    `tokenizer` needs `encode(texts_a, texts_b, max_length)` -> unpadded, truncated ENCODED_KEYS
    columns, and a `fingerprint` string naming its vocabulary and settings (see tokenizer.py)."""
    texts = hashlib.sha256(json.dumps([split.text_a, split.text_b]).encode()).hexdigest()
    key = (texts, tokenizer.fingerprint, max_length)
    if key not in _ENCODED:
        if len(split) == 0:
            encoded = {name: [] for name in ENCODED_KEYS}
        else:
            encoded = tokenizer.encode(split.text_a, split.text_b, max_length)
            check_encoding(encoded, len(split), max_length)
        _ENCODED[key] = tuple(encoded[name] for name in ENCODED_KEYS)
    return EncodedSplit(*_ENCODED[key], labels=split.labels)


def num_batches(n: int, batch_size: int) -> int:
    """How many batches `batches` yields for n examples (the last one may be smaller)."""
    return -(-n // batch_size)


def batches(encoded: EncodedSplit, batch_size: int, shuffle: bool,
            generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """(B, T) int64 input_ids, token_type_ids, attention_mask, padded per batch, and labels (int64 or
    float32) if known. With shuffle, the order comes from `generator` (torch's global RNG if None)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(encoded)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        longest = max(len(encoded.input_ids[i]) for i in idx)
        batch = {}
        for name in ENCODED_KEYS:
            padded = np.zeros((len(idx), longest), dtype=np.int64)  # pad id, type and mask are all 0
            for row, i in enumerate(idx):
                values = getattr(encoded, name)[i]
                padded[row, :len(values)] = values
            batch[name] = torch.from_numpy(padded)
        if encoded.labels is not None:
            batch["labels"] = torch.from_numpy(encoded.labels[idx])
        yield batch
