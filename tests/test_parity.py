"""Our hand-written BERT against the Hugging Face reference on real MiniLM weights.

tests/fixtures/minilm_parity.safetensors holds a padded batch of four sentence
pairs and the reference float32 outputs of transformers' BertModel (eager
attention); see tests/fixtures/README.md for how it was made.
"""

import json
from pathlib import Path

import pytest
import torch
from conftest import DEVICES
from safetensors import safe_open
from safetensors.torch import load_file

from minipelt import BertModel, Tokenizer
from minipelt.model.bert import BertOutput

pytestmark = pytest.mark.usefixtures("each_path")  # every test with the kernels and on the textbook path

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_parity.safetensors"
TOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    """The fixture's tensors, plus the texts they were made from (from the metadata)."""
    with safe_open(FIXTURE, "pt") as f:
        meta = f.metadata()
    return load_file(FIXTURE), json.loads(meta["texts_a"]), json.loads(meta["texts_b"])


@pytest.fixture(scope="module", params=DEVICES)
def outputs(minilm_dir, reference, request):
    ref, _, _ = reference
    model = BertModel.from_pretrained(minilm_dir).to(request.param)
    with torch.no_grad():
        out = model(*(ref[k].to(request.param) for k in ("input_ids", "attention_mask", "token_type_ids")))
    return BertOutput(out.last_hidden_state.cpu(), out.pooler_output.cpu())


def test_fixture_has_padding(reference):
    """Guards the point of the fixture: some rows are padded, some are not."""
    pads = (reference[0]["attention_mask"] == 0).sum(1)
    assert pads.min() == 0 and pads.max() > 0


def test_last_hidden_state_matches(outputs, reference):
    ref, _, _ = reference
    real = ref["attention_mask"].bool()
    diff = (outputs.last_hidden_state - ref["last_hidden_state"]).abs()
    assert diff[real].max() <= TOL
    # Padding positions agree less tightly (measured: 3.9e-5 there vs 3.6e-6 on
    # real tokens). Not a masking difference: transformers' own SDPA path differs
    # from its eager path by exactly the same amounts (our model matches its SDPA
    # path bit for bit), and a float64 run of our model sits ~2-3e-5 from both
    # float32 results at pad positions. Those rows are just more sensitive to
    # float32 rounding. They feed nothing downstream, so a looser bound suffices
    # to show they are computed the same way (attending to the real tokens).
    assert diff.max() <= 10 * TOL


def test_pooler_output_matches(outputs, reference):
    ref, _, _ = reference
    assert (outputs.pooler_output - ref["pooler_output"]).abs().max() <= TOL


def test_tokenizer_reproduces_fixture_ids(minilm_dir, reference):
    ref, texts_a, texts_b = reference
    enc = Tokenizer.from_pretrained(minilm_dir).encode(texts_a, texts_b)
    for i, mask in enumerate(ref["attention_mask"].bool()):
        assert enc["input_ids"][i] == ref["input_ids"][i][mask].tolist()
        assert enc["token_type_ids"][i] == ref["token_type_ids"][i][mask].tolist()
