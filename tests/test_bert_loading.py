"""Reading BERT checkpoints: the layouts seen in the wild load exactly, every broken one fails
with a message that names the tensor or the file and the fix, and the weights fetcher fails
cleanly offline."""
import json
import os

import huggingface_hub
import pytest
import torch
from conftest import TINY, write_tiny_bert
from huggingface_hub.errors import LocalEntryNotFoundError
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import minipelt.weights as weights
from minipelt.model.bert import BertModel
from minipelt.weights import fetch, fetch_from_hub, read_bert_safetensors, resolve_model


def rewrite(directory, state: dict) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))


def assert_loaded_exactly(bert: BertModel, saved: dict, prefix: str = "", skip=()) -> None:
    """Every parameter equals the tensor written under its checkpoint name."""
    own = bert.state_dict()
    for name, tensor in own.items():
        if name not in skip:
            assert torch.equal(tensor, saved[prefix + name]), name


# --- layouts that load ------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "bert."])
def test_tiny_bert_loads_back_exactly(tmp_path, prefix):
    saved = write_tiny_bert(tmp_path / "m", seed=3, prefix=prefix)
    bert = BertModel.from_pretrained(tmp_path / "m")
    assert not bert.training
    assert bert.config == TINY
    assert_loaded_exactly(bert, saved, prefix)
    assert len(bert.state_dict()) == len(saved)


def test_pretraining_checkpoint_layout_loads(tmp_path):
    """The layout of an old BertForPreTraining checkpoint: `bert.` prefix, MLM/NSP heads under
    `cls.`, gamma/beta LayerNorm names and the position_ids buffer, all at once."""
    saved = write_tiny_bert(tmp_path / "m", seed=4)
    state = {}
    for name, tensor in saved.items():
        if "LayerNorm" in name:
            name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
        state["bert." + name] = tensor
    state["bert.embeddings.position_ids"] = torch.arange(TINY.max_position_embeddings)[None]
    state["cls.predictions.bias"] = torch.zeros(TINY.vocab_size)
    state["cls.predictions.transform.dense.weight"] = torch.randn(TINY.hidden_size, TINY.hidden_size)
    state["cls.seq_relationship.weight"] = torch.randn(2, TINY.hidden_size)
    rewrite(tmp_path / "m", state)
    assert_loaded_exactly(BertModel.from_pretrained(tmp_path / "m"), saved)


@pytest.mark.parametrize("variant", ["cls_heads", "gamma_beta", "position_ids"])
def test_each_variant_alone_loads(tmp_path, variant):
    saved = write_tiny_bert(tmp_path / "m", seed=5)
    state = dict(saved)
    if variant == "cls_heads":
        state["cls.predictions.decoder.weight"] = torch.randn(TINY.vocab_size, TINY.hidden_size)
    elif variant == "gamma_beta":
        state = {n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): t
                 for n, t in saved.items()}
        assert "embeddings.LayerNorm.gamma" in state
    else:
        state["embeddings.position_ids"] = torch.arange(TINY.max_position_embeddings)[None]
    rewrite(tmp_path / "m", state)
    assert_loaded_exactly(BertModel.from_pretrained(tmp_path / "m"), saved)


def test_checkpoint_without_pooler_loads(tmp_path):
    saved = write_tiny_bert(tmp_path / "m", seed=6)
    rewrite(tmp_path / "m", {n: t for n, t in saved.items() if not n.startswith("pooler.")})
    bert = BertModel.from_pretrained(tmp_path / "m")
    assert_loaded_exactly(bert, saved, skip={"pooler.dense.weight", "pooler.dense.bias"})
    assert not torch.equal(bert.pooler.dense.weight, saved["pooler.dense.weight"])  # random, not loaded
    out = bert(torch.randint(1, TINY.vocab_size, (2, 5)))
    assert torch.isfinite(out.pooler_output).all()


def test_checkpoint_with_half_a_pooler_is_refused(tmp_path):
    saved = write_tiny_bert(tmp_path / "m")
    rewrite(tmp_path / "m", {n: t for n, t in saved.items() if n != "pooler.dense.weight"})
    with pytest.raises(ValueError, match="missing: pooler.dense.weight"):
        BertModel.from_pretrained(tmp_path / "m")


# --- layouts that must not load ---------------------------------------------------------------

def load_error(directory) -> str:
    with pytest.raises(ValueError) as info:
        BertModel.from_pretrained(directory)
    return str(info.value)


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    saved = write_tiny_bert(tmp_path / "m")

    state = dict(saved)
    del state["encoder.layer.1.output.dense.weight"]
    rewrite(tmp_path / "m", state)
    assert "missing: encoder.layer.1.output.dense.weight" in load_error(tmp_path / "m")

    rewrite(tmp_path / "m", {**saved, "encoder.layer.2.output.dense.weight": torch.zeros(32, 64)})
    assert "unexpected: encoder.layer.2.output.dense.weight" in load_error(tmp_path / "m")

    rewrite(tmp_path / "m", {**saved, "embeddings.word_embeddings.weight": torch.zeros(65, 32)})
    message = load_error(tmp_path / "m")
    assert "wrong shape: embeddings.word_embeddings.weight: checkpoint (65, 32) vs model (64, 32)" in message
    assert "config.json" in message  # the likely fix

    # All three problems are reported together, in one error.
    state = {**saved, "embeddings.word_embeddings.weight": torch.zeros(65, 32), "encoder.layer.9.foo": torch.zeros(1)}
    del state["encoder.layer.0.attention.self.key.bias"]
    rewrite(tmp_path / "m", state)
    message = load_error(tmp_path / "m")
    for part in ("missing: encoder.layer.0.attention.self.key.bias", "unexpected: encoder.layer.9.foo",
                 "wrong shape: embeddings.word_embeddings.weight"):
        assert part in message
    assert str(tmp_path / "m") in message


def test_truncated_file_fails_clearly(tmp_path):
    write_tiny_bert(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = load_error(tmp_path / "m")
    assert "model.safetensors is not a readable safetensors file" in message
    assert "truncated" in message and "fetch NAME --force" in message


class Trap:
    """Unpickling this creates a file: the proof that something unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("content", ["text", "pickle"])
def test_non_safetensors_file_is_refused_and_never_unpickled(tmp_path, content):
    write_tiny_bert(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    marker = tmp_path / "unpickled"
    if content == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 440473133\n")
    else:
        torch.save({"embeddings.word_embeddings.weight": torch.zeros(64, 32), "trap": Trap(marker)}, path)
    message = load_error(tmp_path / "m")
    assert "is not a readable safetensors file" in message
    assert not marker.exists(), "the pickle was unpickled"
    with pytest.raises(ValueError):
        read_bert_safetensors(path)
    assert not marker.exists()


def test_missing_weights_say_how_to_fetch(tmp_path):
    write_tiny_bert(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"python -m minipelt.weights fetch NAME") as info:
        BertModel.from_pretrained(tmp_path / "m")
    assert "pickle" not in str(info.value)

    marker = tmp_path / "unpickled"
    torch.save({"trap": Trap(marker)}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin is there, but pickles are never loaded"):
        BertModel.from_pretrained(tmp_path / "m")
    assert not marker.exists()


def test_missing_config_json(tmp_path):
    write_tiny_bert(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        BertModel.from_pretrained(tmp_path / "m")


def test_unsupported_config_is_refused(tmp_path):
    write_tiny_bert(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act 'relu' is not supported"):
        BertModel.from_pretrained(tmp_path / "m")


def test_unknown_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that the name is not a directory by accident
    with pytest.raises(ValueError, match=r"unknown model 'bert-huge-cased'.*minilm"):
        resolve_model("bert-huge-cased")
    with pytest.raises(ValueError, match="unknown model"):
        BertModel.from_pretrained("bert-huge-cased")
    write_tiny_bert(tmp_path / "local")
    assert resolve_model("local").resolve() == tmp_path / "local"  # a directory is used as is


# --- attention mask ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mask") / "m"
    write_tiny_bert(directory, seed=7)
    return BertModel.from_pretrained(directory)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), extra=st.integers(0, 3),
       seed=st.integers(0, 2**31 - 1))
def test_padding_does_not_change_real_tokens(tiny_bert, lengths, extra, seed):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths) + extra
    ids = torch.randint(1, TINY.vocab_size, (len(lengths), T), generator=g)  # pads hold random ids
    types = torch.randint(0, 2, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        padded = tiny_bert(ids, mask, types)
        for i, n in enumerate(lengths):
            alone = tiny_bert(ids[i:i + 1, :n], None, types[i:i + 1, :n])
            torch.testing.assert_close(padded.last_hidden_state[i, :n], alone.last_hidden_state[0],
                                       atol=1e-5, rtol=0)
            torch.testing.assert_close(padded.pooler_output[i], alone.pooler_output[0], atol=1e-5, rtol=0)


def test_sequence_longer_than_position_table_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="exceeds the model's position table"):
        tiny_bert(torch.ones(1, TINY.max_position_embeddings + 1, dtype=torch.long))


# --- fetching offline -------------------------------------------------------------------------

def offline(repo_id, filename, **kwargs):
    raise LocalEntryNotFoundError("cannot reach the hub and the file is not cached")


def test_fetch_from_hub_offline_explains_and_suggests_minilm(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError) as info:
        fetch_from_hub("bert-base-uncased", tmp_path)
    message = str(info.value)
    assert "cannot download config.json of bert-base-uncased from the Hugging Face hub" in message
    assert "offline" in message and "--model minilm" in message
    assert "python -m minipelt.weights fetch minilm" in message


def test_failed_fetch_leaves_no_folder_behind(tmp_path, monkeypatch):
    """The first files download, model.safetensors fails: nothing half-fetched may remain."""
    weights_dir = tmp_path / "weights"
    monkeypatch.setattr(weights, "WEIGHTS_DIR", weights_dir)
    requested = []

    def flaky(repo_id, filename, local_dir, **kwargs):
        requested.append(filename)
        if filename == "model.safetensors":
            offline(repo_id, filename)
        (local_dir / filename).write_text("{}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", flaky)
    with pytest.raises(RuntimeError, match="offline"):
        fetch("bert-base-uncased")
    assert requested == ["config.json", "vocab.txt", "tokenizer.json", "model.safetensors"]
    assert not (weights_dir / "bert-base-uncased").exists()
    assert list(weights_dir.iterdir()) == []  # the staging folder is gone too

    # The command line: exits with the same message, no traceback.
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(SystemExit) as info:
        weights.main(["fetch", "bert-base-uncased"])
    assert str(info.value.code).startswith("error: cannot download") and "minilm" in str(info.value.code)
    assert list(weights_dir.iterdir()) == []
