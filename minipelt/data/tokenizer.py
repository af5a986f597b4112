"""BERT WordPiece tokenizer on top of the `tokenizers` library.

A model directory ships a ready-made `tokenizer.json` (byte-for-byte what the original
authors used) or only `vocab.txt`, from which we assemble the standard BERT pipeline:

    BertNormalizer -> BertPreTokenizer -> WordPiece -> [CLS] A [SEP] (B [SEP])

`encode` returns unpadded rows (batches are padded to their own longest row), truncated as
each call says, so whatever a `tokenizer.json` saved (MiniLM's: "pad everything to 128")
never leaks into our results.
"""

import hashlib
import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_from_vocab(vocab_file: Path, lowercase: bool) -> HFTokenizer:
    """Build the classic BERT tokenizer from a bare `vocab.txt`."""
    tok = HFTokenizer(WordPiece.from_file(str(vocab_file), unk_token="[UNK]"))
    # strip_accents=None means "strip iff lowercasing", as in the original BERT.
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls is None or sep is None:
        raise ValueError(f"{vocab_file} has no [CLS] or [SEP] token: it is not a BERT vocabulary (or it is empty); "
                         f"fetch the model's vocab.txt again")
    # Sentence A (and its [CLS]/[SEP]) get type id 0, sentence B gets type id 1.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    # Registering the specials means a literal "[SEP]" in the text stays one token.
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
    return tok


class Tokenizer:
    """Turns (pairs of) strings into BERT input ids, type ids and attention masks."""

    def __init__(self, tok: HFTokenizer, pad_token: str = "[PAD]"):
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        self.pad_token_id = tok.token_to_id(pad_token)
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        # Identifies the exact tokenization rules; used as a cache key for
        # pre-tokenized datasets. Computed with padding/truncation disabled, so
        # it does not depend on the state saved in tokenizer.json.
        self.fingerprint = hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]

    @classmethod
    def from_pretrained(cls, path) -> "Tokenizer":
        """Load from a model directory (`tokenizer.json`, else `vocab.txt`)."""
        path = Path(path)
        config_file = path / "tokenizer_config.json"
        try:
            config = json.loads(config_file.read_text()) if config_file.exists() else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_file} is not valid JSON ({e}): fetch it again, or delete it") from None
        pad_token = config.get("pad_token", "[PAD]")
        if (path / "tokenizer.json").exists():
            try:
                return cls(HFTokenizer.from_file(str(path / "tokenizer.json")), pad_token)
            except Exception as e:  # the tokenizers library raises a bare Exception for a file it cannot parse
                raise ValueError(f"{path / 'tokenizer.json'} cannot be read by the tokenizers library ({e}): "
                                 f"fetch it again, or delete it to build the tokenizer from vocab.txt") from None
        if (path / "vocab.txt").exists():
            lowercase = config.get("do_lower_case", True)
            return cls(_bert_from_vocab(path / "vocab.txt", lowercase), pad_token)
        raise FileNotFoundError(
            f"No tokenizer.json or vocab.txt in {path}. Fetch a model with "
            "`python -m minipelt.weights fetch NAME` or pass a model directory."
        )

    def check_fits(self, embedding_rows: int, model_dir) -> None:
        """Refuse a tokenizer whose ids run past the model's word embeddings (`embedding_rows`): it
        belongs to another model, and the first batch would fail with an index error."""
        if self.vocab_size > embedding_rows:
            raise ValueError(f"the tokenizer in {model_dir} has {self.vocab_size} tokens, but the model's config.json "
                             f"gives vocab_size {embedding_rows}: the tokenizer files belong to another model")

    def encode(self, texts_a: list[str], texts_b: list[str] | None = None,
               max_length: int = 128) -> dict[str, list[list[int]]]:
        """Encode a batch of single sentences, or of pairs if `texts_b` is given.

        Each row is cut to at most `max_length` tokens, specials included. For
        pairs the longer of the two sentences loses tokens first ("longest
        first"), the same default as the HF tokenizers. Rows are not padded.
        """
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise ValueError(f"{len(texts_a)} first texts but {len(texts_b)} second texts")
        self._tok.enable_truncation(max_length=max_length, strategy="longest_first")
        inputs = list(texts_a) if texts_b is None else list(zip(texts_a, texts_b))
        encodings = self._tok.encode_batch(inputs)
        return {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
