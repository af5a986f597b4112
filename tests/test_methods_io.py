"""What leaves and enters a trained model: checkpoints, LoRA merging, prefix folding, the
parameter report, and the method configuration."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, write_tiny_bert
from safetensors.torch import save_file

from minipelt.bert import BertConfig, BertModel
from minipelt.checkpoint import load_trainable, model_from_checkpoint, save_trainable
from minipelt.classifier import SequenceClassifier
from minipelt.lora import LoRALinear
from minipelt.methods import METHODS, PARTS, PeltConfig, is_trainable
from minipelt.summary import count_trainable, report

REPO_ROOT = Path(__file__).resolve().parents[1]
BERT_BASE_CONFIG = REPO_ROOT.parent / "shared/configs/bert-base-uncased.json"
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


# --- parameter report (bert-base) -------------------------------------------------------------

def parse_report(text: str) -> dict[str, int]:
    """'  lora   294,912   0.269%' -> {'lora': 294912, ...}"""
    counts = {}
    for line in text.splitlines()[2:]:
        words = line.split()
        if words[0] == "with":
            counts["with head"] = int(words[2].replace(",", ""))
        else:
            counts[words[0]] = int(words[1].replace(",", ""))
    return counts


def bert_base(method: str) -> SequenceClassifier:
    with torch.device("meta"):
        return SequenceClassifier(BertModel(BertConfig.from_json(BERT_BASE_CONFIG), PeltConfig.from_method(method)), 2)


needs_bert_base_config = pytest.mark.skipif(not BERT_BASE_CONFIG.is_file(),
                                            reason=f"{BERT_BASE_CONFIG} not present")


@needs_bert_base_config
def test_parameter_counts_match_the_paper_for_bert_base():
    # Adapter: 12 layers * (2 * 768 * 48 + 48 + 768) = 12 * 74,544.
    model = bert_base("adapter")
    assert count_trainable(model)["adapter"] == 894_528 == 12 * 74_544
    assert parse_report(report(model))["total"] == 894_528

    # Prefix: 12 * 2 * 10 * 768 folded; while training P (10 * 768) + the MLP
    # 768*512 + 512 + 512*18,432 + 18,432 = 9,857,024 (reported in parentheses).
    model = bert_base("prefix")
    text = report(model)
    assert parse_report(text)["prefix"] == 184_320 == 12 * 2 * 10 * 768
    assert count_trainable(model)["prefix"] == 9_857_024
    assert "(9,857,024 while training, with the MLP)" in text

    assert count_trainable(bert_base("lora"))["lora"] == 294_912 == 12 * 2 * 2 * 8 * 768
    assert parse_report(report(bert_base("lora")))["total"] == 294_912

    # BitFit: 12 * (7 * 768 + 3072) + 768 (embeddings LN) + 768 (pooler) = 102,912.
    bitfit = count_trainable(bert_base("bitfit"))
    assert bitfit["bias"] == 102_912
    assert parse_report(report(bert_base("bitfit")))["total"] == 102_912

    # UniPELT: + one Linear(768 -> 1) gate (769 params) per gated matrix and layer, head excluded.
    ap = parse_report(report(bert_base("unipelt-ap")))
    assert ap["gates"] == 2 * 12 * 769
    assert ap["total"] == 1_097_304 == 894_528 + 184_320 + 2 * 12 * 769
    apl = parse_report(report(bert_base("unipelt")))
    assert apl["gates"] == 4 * 12 * 769
    assert apl["total"] == 1_410_672 == 1_097_304 + 294_912 + 2 * 12 * 769
    assert apl["with head"] == 1_410_672 + 768 * 2 + 2
    assert count_trainable(bert_base("unipelt"))["head"] == 768 * 2 + 2


@needs_bert_base_config
def test_summary_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "minipelt.summary", "--config", str(BERT_BASE_CONFIG), "--method", "unipelt"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("method unipelt:")
    assert parse_report(result.stdout)["total"] == 1_410_672


# --- PeltConfig -------------------------------------------------------------------------------

def test_unknown_method_lists_the_valid_ones():
    for bad in ("unipelt-apl", "lora+dora", "", "LoRA"):
        with pytest.raises(ValueError, match="unknown method") as info:
            PeltConfig.from_method(bad)
        for valid in PARTS + tuple(METHODS):
            assert valid in str(info.value)


def test_method_defaults_and_overrides():
    unipelt = PeltConfig.from_method("unipelt")
    assert unipelt.gated and unipelt.adapter and unipelt.prefix and unipelt.lora and not unipelt.bitfit
    assert PeltConfig.from_method("unipelt-ap") == PeltConfig(adapter=True, prefix=True, gated=True)
    ungated = PeltConfig.from_method("unipelt", gated=False)
    assert not ungated.gated and ungated.lora
    assert not PeltConfig.from_method("adapter+lora").gated  # only the named UniPELT methods gate by default
    assert PeltConfig.from_method("lora", gated=True, lora_r=4).lora_r == 4
    assert PeltConfig.from_method("lora", lora_r=None).lora_r == 8  # None = keep the default (CLI flags)
    # the paper's defaults
    d = PeltConfig.from_method("unipelt")
    assert (d.reduction_factor, d.prefix_length, d.prefix_hidden, d.lora_r, d.lora_alpha, d.prefix_gate) == \
        (16, 10, 512, 8, 16.0, "attention")


def test_finetune_combines_with_nothing():
    for method in ("finetune+lora", "finetune+bitfit", "finetune+adapter+prefix"):
        with pytest.raises(ValueError, match="finetune"):
            PeltConfig.from_method(method)
    with pytest.raises(ValueError, match="--prefix-gate must be one of attention, kv"):
        PeltConfig.from_method("prefix", prefix_gate="keys")


@pytest.mark.parametrize("method, gated", [
    ("finetune", False), ("bitfit", False), ("lora", True), ("unipelt", True), ("unipelt", False),
    ("unipelt-ap", True), ("adapter+lora", False), ("prefix", True),
])
def test_json_round_trip_and_name(method, gated):
    pelt = PeltConfig.from_method(method, gated=gated, lora_r=4)
    assert PeltConfig.from_json(pelt.to_json()) == pelt
    expected = {("finetune", False): "finetune", ("bitfit", False): "bitfit", ("lora", True): "lora(gated)",
                ("unipelt", True): "unipelt", ("unipelt", False): "adapter+prefix+lora",
                ("unipelt-ap", True): "unipelt-ap", ("adapter+lora", False): "adapter+lora",
                ("prefix", True): "prefix(gated)"}[method, gated]
    assert pelt.name == expected
    assert PeltConfig().name == "frozen"
