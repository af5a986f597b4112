"""The few-shot protocol, the encoding cache and batching."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minipelt.data import fewshot
from minipelt.data.fewshot import EncodedSplit, batches, encode_split, few_shot, few_shot_indices, num_batches
from minipelt.data.glue import Split

# ---------------------------------------------------------------- the few-shot protocol


def make_split(n: int) -> Split:
    return Split([f"text {i}" for i in range(n)], None, np.arange(n, dtype=np.int64) % 2)


def test_few_shot_protocol():
    train, dev = few_shot(make_split(1500), k=100, seed=3)
    assert len(train) == 100 and len(dev) == 1000
    assert not set(train.text_a) & set(dev.text_a)
    again_train, again_dev = few_shot(make_split(1500), k=100, seed=3)
    assert again_train.text_a == train.text_a and again_dev.text_a == dev.text_a
    assert few_shot(make_split(1500), k=100, seed=4)[0].text_a != train.text_a
    # the protocol's definition: first K of the seed's permutation train, the next 1000 dev
    order = np.random.default_rng(3).permutation(1500)
    assert train.text_a == [f"text {i}" for i in order[:100]]
    assert dev.text_a == [f"text {i}" for i in order[100:1100]]


def test_few_shot_full_and_errors():
    train_idx, dev_idx = few_shot_indices(1500, None, seed=0)
    assert len(train_idx) == 500 and len(dev_idx) == 1000
    assert sorted(np.concatenate([train_idx, dev_idx]).tolist()) == list(range(1500))
    with pytest.raises(ValueError, match="K=1000 train \\+ 1000 dev examples = 2000, but the training set has only "
                                         "1500; use --k 500 or less"):
        few_shot_indices(1500, 1000, seed=0)
    with pytest.raises(ValueError, match="k must be a positive"):
        few_shot_indices(1500, 0, seed=0)
    with pytest.raises(ValueError, match="full training needs more than the 1000 dev examples, but the training "
                                         "set has only 1000; use --dev-size 999 or less"):
        few_shot_indices(1000, None, seed=0)
    with pytest.raises(ValueError, match="K=16 train \\+ 5000 dev examples = 5016, .* use --dev-size 1484 or less"):
        few_shot_indices(1500, 16, seed=0, dev_size=5000)
    with pytest.raises(ValueError, match="use a --k and --dev-size that add up to 1500 at most"):
        few_shot_indices(1500, 2000, seed=0, dev_size=5000)


# ---------------------------------------------------------------- encoding and batching


class WordTokenizer:
    """A stand-in with the real tokenizer's interface: [CLS]=1 words [SEP]=2 (words [SEP]), truncated."""

    fingerprint = "words-v1"

    def __init__(self):
        self.calls = 0

    def encode(self, texts_a, texts_b, max_length):
        self.calls += 1
        out = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        for i, a in enumerate(texts_a):
            ids = [1] + [3 + len(w) for w in a.split()] + [2]
            types = [0] * len(ids)
            if texts_b is not None:
                second = [3 + len(w) for w in texts_b[i].split()] + [2]
                ids, types = ids + second, types + [1] * len(second)
            out["input_ids"].append(ids[:max_length])
            out["token_type_ids"].append(types[:max_length])
            out["attention_mask"].append([1] * len(ids[:max_length]))
        return out


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(fewshot, "_ENCODED", {})


def test_encoding_is_cached_and_selection_reuses_it(fresh_cache):
    tokenizer = WordTokenizer()
    split = Split(["a bb", "ccc", "d"], ["x", "yy zz", "w"], np.array([0, 1, 0]))
    first = encode_split(split, tokenizer, max_length=8)
    second = encode_split(split, tokenizer, max_length=8)
    assert tokenizer.calls == 1 and second.input_ids is first.input_ids
    assert first.input_ids[0] == [1, 4, 5, 2, 4, 2] and first.token_type_ids[0] == [0, 0, 0, 0, 1, 1]
    assert encode_split(split, tokenizer, max_length=3).input_ids[0] == [1, 4, 5]
    assert tokenizer.calls == 2  # another max length is another encoding
    # encoding then selecting equals selecting then encoding
    selected, reencoded = first.select([2, 0]), encode_split(split.select([2, 0]), tokenizer, 8)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert getattr(selected, name) == getattr(reencoded, name)
    assert selected.labels.tolist() == reencoded.labels.tolist() == [0, 0]


def test_tokenizer_breaking_interface_is_caught(fresh_cache):
    tokenizer = SimpleNamespace(fingerprint="broken", encode=lambda a, b, m: {"input_ids": [[1]]})
    with pytest.raises(ValueError, match=r"returned no \['token_type_ids', 'attention_mask'\]"):
        encode_split(make_split(1), tokenizer, 8)


def encoded_from_lengths(lengths: list[int], regression: bool = False) -> EncodedSplit:
    ids = [[10 * i + t + 1 for t in range(n)] for i, n in enumerate(lengths)]
    labels = np.arange(len(lengths), dtype=np.float32 if regression else np.int64)
    return EncodedSplit(ids, [[t % 2 for t in range(n)] for n in lengths], [[1] * n for n in lengths], labels)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), max_size=30), st.integers(1, 8), st.booleans(), st.booleans())
def test_batches_pad_to_longest_and_cover_every_example(lengths, batch_size, shuffle, regression):
    encoded = encoded_from_lengths(lengths, regression)
    generator = torch.Generator().manual_seed(0)
    seen = []
    produced = list(batches(encoded, batch_size, shuffle, generator))
    assert len(produced) == num_batches(len(lengths), batch_size)
    for batch in produced:
        rows = batch["labels"].long().tolist()  # labels equal the example's position
        longest = max(lengths[i] for i in rows)
        assert batch["input_ids"].shape == (len(rows), longest)
        assert batch["labels"].dtype == (torch.float32 if regression else torch.int64)
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            assert batch[name].dtype == torch.int64 and batch[name].shape == (len(rows), longest)
        for row, i in enumerate(rows):
            n = lengths[i]
            assert batch["input_ids"][row, :n].tolist() == encoded.input_ids[i]
            assert batch["token_type_ids"][row, :n].tolist() == encoded.token_type_ids[i]
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
            assert not batch["input_ids"][row, n:].any() and not batch["token_type_ids"][row, n:].any()
        seen += rows
    assert sorted(seen) == list(range(len(lengths)))
    if not shuffle:
        assert seen == list(range(len(lengths)))


def test_shuffled_batches_are_deterministic_given_the_generator():
    encoded = encoded_from_lengths([3] * 50)

    def order(seed):
        return [b["labels"].tolist() for b in batches(encoded, 7, True, torch.Generator().manual_seed(seed))]

    assert order(1) == order(1) and order(1) != order(2)


def test_batches_edge_cases():
    assert list(batches(encoded_from_lengths([]), 4, shuffle=True)) == []
    unlabelled = EncodedSplit([[1, 2]], [[0, 0]], [[1, 1]], None)
    assert "labels" not in next(batches(unlabelled, 4, shuffle=False))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(batches(unlabelled, 0, shuffle=False))


