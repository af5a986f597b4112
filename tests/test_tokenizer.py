"""Tokenizer: golden ids from the reference tokenizer, type ids, truncation, errors.

tests/fixtures/tokenizer_ids.json holds ids produced by Hugging Face's BERT
tokenizer (see tests/fixtures/README.md). We must reproduce them exactly both
from MiniLM's `tokenizer.json` and from a bare `vocab.txt`, where we build the
BERT pipeline ourselves.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from minipelt.data.tokenizer import Tokenizer

CASES = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_ids.json").read_text())["cases"]
CLS, SEP = 101, 102
LONG_A = "the quick brown fox jumps over the lazy dog " * 8
LONG_B = "a fast auburn fox leaped above a sleepy hound " * 3


@pytest.fixture(params=["tokenizer.json", "vocab.txt"])
def tok(request, minilm_dir, tmp_path):
    """MiniLM's tokenizer, loaded from tokenizer.json or rebuilt from vocab.txt only."""
    if request.param == "tokenizer.json":
        return Tokenizer.from_pretrained(minilm_dir)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(Path(minilm_dir) / name, tmp_path / name)
    return Tokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[c["text_a"][:20] for c in CASES])
def test_matches_reference_ids(tok, case):
    texts_b = None if case["text_b"] is None else [case["text_b"]]
    enc = tok.encode([case["text_a"]], texts_b, max_length=case["max_length"])
    assert enc["input_ids"] == [case["input_ids"]]
    assert enc["token_type_ids"] == [case["token_type_ids"]]


def test_pair_type_ids(tok):
    """[CLS] A [SEP] has type 0, B [SEP] has type 1; singles are all type 0."""
    enc = tok.encode(["first sentence here", "x"], ["and the second", "y z"])
    for ids, types in zip(enc["input_ids"], enc["token_type_ids"]):
        first_sep = ids.index(SEP)
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    assert set(sum(tok.encode(["only one sentence"])["token_type_ids"], [])) == {0}


@pytest.mark.parametrize("max_length", [5, 16, 33])
def test_truncation_respects_max_length(tok, max_length):
    for texts_b in (None, [LONG_B], ["short"]):
        ids = tok.encode([LONG_A], texts_b, max_length=max_length)["input_ids"][0]
        assert len(ids) == max_length
        assert ids[0] == CLS and ids[-1] == SEP
        assert ids.count(SEP) == (1 if texts_b is None else 2)


def test_rows_are_unpadded_and_calls_independent(tok):
    """No padding (MiniLM's tokenizer.json asks for 128) and no truncation left
    over from an earlier call with a smaller max_length."""
    tok.encode([LONG_A], max_length=8)
    enc = tok.encode(["hi", LONG_A], max_length=128)
    assert [len(r) for r in enc["input_ids"]] == [3, 2 + 9 * 8]
    assert enc["attention_mask"] == [[1] * len(r) for r in enc["input_ids"]]


def test_attributes(tok, minilm_dir):
    assert tok.pad_token_id == 0
    assert tok.vocab_size == 30522
    assert re.fullmatch(r"[0-9a-f]{16}", tok.fingerprint)
    # A cache key must be the same every time the same tokenizer is loaded.
    assert Tokenizer.from_pretrained(minilm_dir).fingerprint == Tokenizer.from_pretrained(minilm_dir).fingerprint


def test_vocab_only_honours_do_lower_case(minilm_dir, tmp_path):
    shutil.copy(Path(minilm_dir) / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()  # default: lowercase
    uncased = Tokenizer.from_pretrained(tmp_path)
    assert cased.encode(["Hello"])["input_ids"] != uncased.encode(["Hello"])["input_ids"]
    assert uncased.encode(["Hello"])["input_ids"] == uncased.encode(["hello"])["input_ids"]


def test_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="minipelt.weights fetch") as info:
        Tokenizer.from_pretrained(tmp_path)
    assert str(tmp_path) in str(info.value)
