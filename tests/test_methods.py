"""The method registry and configuration (minipelt/model/methods.py) and the parameter report (summary.py)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minipelt.model.bert import BertConfig, BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import METHODS, PARTS, PeltConfig, get_method
from minipelt.summary import count_trainable, main as summary_main, report

REPO_ROOT = Path(__file__).resolve().parents[1]
BERT_BASE_CONFIG = REPO_ROOT.parent / "shared/configs/bert-base-uncased.json"


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


@pytest.mark.parametrize("args, expected", [
    (["--config", "no/such/config.json"], "No such file or directory"),
    (["--config", "{tmp}/config.json", "--method", "lorra"], "unknown method 'lorra'"),
], ids=["missing config", "unknown method"])
def test_summary_bad_input_is_one_error_line(args, expected, tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 32, "num_attention_heads": 2}')
    with pytest.raises(SystemExit) as exit_:
        summary_main([a.format(tmp=tmp_path) for a in args])
    assert str(exit_.value.code).startswith("error: ") and expected in str(exit_.value.code)


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


def test_the_registry_names_the_papers_seven_methods_and_any_combination():
    assert list(METHODS) == ["finetune", "bitfit", "adapter", "prefix", "lora", "unipelt-ap", "unipelt"]
    for name, method in METHODS.items():
        assert set(method.parts) <= set(PARTS) and list(method.parts) == [p for p in PARTS if p in method.parts]
        assert PeltConfig.from_method(name).name == name  # the name round-trips through the config
    combination = get_method("lora+adapter")
    assert combination.parts == ("adapter", "lora") and not combination.gated
    assert (combination.lr, combination.prefix_lr, combination.epochs) == (
        METHODS["unipelt"].lr, METHODS["unipelt"].prefix_lr, METHODS["unipelt"].epochs)
