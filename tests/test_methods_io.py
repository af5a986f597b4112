"""What leaves and enters a trained model: checkpoints, LoRA merging, prefix folding."""
import pytest
import torch
from conftest import TINY, write_tiny_bert
from safetensors.torch import save_file

from minipelt.model.bert import BertConfig, BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.lora import LoRALinear
from minipelt.model.methods import PeltConfig, is_trainable
from minipelt.training.checkpoint import load_trainable, model_from_checkpoint, save_trainable

NUM_LABELS = 3


@torch.no_grad()
def perturb(model: SequenceClassifier, std: float = 0.3, seed: int = 0) -> None:
    """'Train': noise on every trainable parameter (lora_B included, which starts at 0)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if is_trainable(name, model.bert.pelt):
            p.add_(std * torch.randn(p.shape, generator=g))


def build(directory, pelt: PeltConfig, pooling: str = "cls") -> SequenceClassifier:
    return SequenceClassifier(BertModel.from_pretrained(directory, pelt), NUM_LABELS, pooling).eval()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY.vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    return ids, mask


def logits(model, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return model(*batch(seed))


# --- checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize("method, gated, pooling", [
    ("lora", False, "cls"), ("adapter", True, "mean"), ("prefix", False, "cls"), ("unipelt-ap", True, "mean"),
    ("unipelt", True, "cls"), ("adapter+prefix+lora", False, "mean"), ("bitfit", False, "cls"),
    ("finetune", False, "mean"),
])
def test_save_load_round_trip_is_exact(tiny_dir, tmp_path, method, gated, pooling):
    pelt = PeltConfig.from_method(method, gated=gated)
    trained = build(tiny_dir, pelt, pooling)
    perturb(trained)
    path = tmp_path / "best.safetensors"
    save_trainable(trained, path, task="sst2")
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file

    fresh = build(tiny_dir, pelt, pooling)
    assert not torch.equal(logits(fresh), logits(trained))  # really something to restore
    meta = load_trainable(fresh, path)
    assert meta["task"] == "sst2" and meta["pooling"] == pooling
    assert torch.equal(logits(fresh), logits(trained))
    for (n, a), (_, b) in zip(trained.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n

    rebuilt = model_from_checkpoint(path, tiny_dir)
    assert not rebuilt.training and rebuilt.pooling == pooling and rebuilt.bert.pelt == pelt
    assert torch.equal(logits(rebuilt), logits(trained))


def test_folded_prefix_checkpoint_loads_onto_an_unfolded_model(tiny_dir, tmp_path):
    pelt = PeltConfig.from_method("unipelt")
    trained = build(tiny_dir, pelt)
    perturb(trained)
    trained.bert.prefix.fold()
    save_trainable(trained, tmp_path / "folded.safetensors")
    fresh = build(tiny_dir, pelt)
    load_trainable(fresh, tmp_path / "folded.safetensors")
    assert fresh.bert.prefix.folded is not None
    assert torch.equal(logits(fresh), logits(trained))


def test_checkpoint_of_another_method_is_refused(tiny_dir, tmp_path):
    model = build(tiny_dir, PeltConfig.from_method("lora"))
    save_trainable(model, tmp_path / "lora.safetensors")
    with pytest.raises(ValueError, match=r"trained with method lora .*but the model has adapter"):
        load_trainable(build(tiny_dir, PeltConfig.from_method("adapter")), tmp_path / "lora.safetensors")
    # The same method with other options (gated, rank) is another method too.
    with pytest.raises(ValueError, match=r"method lora .*lora\(gated\)"):
        load_trainable(build(tiny_dir, PeltConfig.from_method("lora", gated=True)), tmp_path / "lora.safetensors")
    with pytest.raises(ValueError, match="lora_r=4"):
        load_trainable(build(tiny_dir, PeltConfig.from_method("lora", lora_r=4)), tmp_path / "lora.safetensors")


def test_checkpoint_on_other_base_weights_is_refused(tiny_dir, tmp_path):
    pelt = PeltConfig.from_method("unipelt")
    save_trainable(build(tiny_dir, pelt), tmp_path / "ckpt.safetensors")
    write_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="other base weights"):
        load_trainable(build(tmp_path / "other", pelt), tmp_path / "ckpt.safetensors")
    with pytest.raises(ValueError, match="other base weights"):
        model_from_checkpoint(tmp_path / "ckpt.safetensors", tmp_path / "other")
    wider = BertConfig(**{**TINY.__dict__, "intermediate_size": 48})
    write_tiny_bert(tmp_path / "wider", wider)
    with pytest.raises(ValueError, match="base model of another shape"):
        load_trainable(build(tmp_path / "wider", pelt), tmp_path / "ckpt.safetensors")


def test_unreadable_checkpoints_fail_clearly(tiny_dir, tmp_path):
    pelt = PeltConfig.from_method("lora")
    model = build(tiny_dir, pelt)
    good = tmp_path / "good.safetensors"
    save_trainable(model, good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a checkpoint at all\n" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match="is not a readable safetensors checkpoint"):
            load_trainable(model, path)
        with pytest.raises(ValueError, match="is not a readable safetensors checkpoint"):
            model_from_checkpoint(path, tiny_dir)

    foreign = tmp_path / "foreign.safetensors"  # valid safetensors, but not ours
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a minipelt checkpoint"):
        load_trainable(model, foreign)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_trainable(model, tmp_path / "missing.safetensors")


# --- LoRA merge -------------------------------------------------------------------------------

def lora_linears(model) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear) and m.r > 0]


def test_lora_merge(tiny_dir):
    model = build(tiny_dir, PeltConfig.from_method("lora"))
    perturb(model)
    unmerged = logits(model)
    layers = lora_linears(model)
    assert len(layers) == 2 * TINY.num_hidden_layers
    originals = [m.weight.detach().clone() for m in layers]

    for m in layers:
        m.merge()
    for m, w in zip(layers, originals):
        assert m.merged
        assert torch.equal(m.weight, w + m.scaling * (m.lora_B @ m.lora_A))  # W + (alpha/r) B A
        assert m.scaling == 2.0  # 16 / 8
    once = [m.weight.detach().clone() for m in layers]
    merged = logits(model)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)

    for m in layers:
        m.merge()  # idempotent
    assert all(torch.equal(m.weight, w) for m, w in zip(layers, once))
    assert torch.equal(logits(model), merged)

    for m in layers:
        m.unmerge()
        m.unmerge()  # idempotent
    for m, w in zip(layers, originals):
        assert not m.merged
        torch.testing.assert_close(m.weight, w, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=0)


def test_gated_lora_cannot_be_merged(tiny_dir):
    model = build(tiny_dir, PeltConfig.from_method("unipelt"))
    m = lora_linears(model)[0]
    before = m.weight.detach().clone()
    with pytest.raises(ValueError, match="gated LoRA cannot be merged"):
        m.merge()
    assert not m.merged and torch.equal(m.weight, before)


# --- prefix fold ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["prefix", "unipelt"])
def test_prefix_fold(tiny_dir, method):
    pelt = PeltConfig.from_method(method)
    model = build(tiny_dir, pelt)
    perturb(model)
    before = logits(model)
    prefix = model.bert.prefix
    mlp_form = prefix().detach().clone()
    prefix.fold()
    folded = prefix.folded
    assert not hasattr(prefix, "mlp") and not hasattr(prefix, "embedding")
    # N * 2 * L * H values: the P_K, P_V of every layer, in the (N, 2, h, L, d) layout.
    N, h, H = TINY.num_hidden_layers, TINY.num_attention_heads, TINY.hidden_size
    assert folded.numel() == N * 2 * pelt.prefix_length * H == 1280
    assert folded.shape == (N, 2, h, pelt.prefix_length, H // h)
    assert torch.equal(prefix(), mlp_form)
    torch.testing.assert_close(logits(model), before, atol=1e-6, rtol=0)
    prefix.fold()  # idempotent: the same parameter, same values
    assert prefix.folded is folded and torch.equal(prefix(), mlp_form)
    names = [n for n, _ in model.named_parameters() if n.startswith("bert.prefix.")]
    assert names == ["bert.prefix.folded"]
