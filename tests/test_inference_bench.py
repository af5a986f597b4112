"""bench/speed/inference.py: every method deployed and timed in the same rounds as plain BERT, on a tiny model."""
import dataclasses
import json

from conftest import TINY, write_tiny_bert

from bench.speed import inference


def test_every_method_is_deployed_and_timed_against_plain_bert(tmp_path):
    tiny_dir = tmp_path / "tiny"  # a vocabulary past the ids bench batches draw from (1000 and up)
    write_tiny_bert(tiny_dir, dataclasses.replace(TINY, vocab_size=1100))
    inference.main(["--model", str(tiny_dir), "--shapes", "2x8,1x16", "--rounds", "2", "--warmup", "0",
                    "--threads", "1", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / f"inference_{tiny_dir.name}_cpu.json").read_text())
    assert result["deployed"]["prefix"] == "prefix folded" and result["deployed"]["lora"] == "LoRA merged"
    assert result["deployed"]["unipelt"] == "prefix folded"  # its LoRA is gated: not mergeable
    for times in result["seconds"].values():
        assert set(times) == set(result["deployed"]) and all(len(t) == 2 for t in times.values())
    table = (tmp_path / f"inference_{tiny_dir.name}_cpu.md").read_text()
    finetune = next(line for line in table.splitlines() if line.startswith("| finetune |"))
    cells = [cell.strip() for cell in finetune.split("|")]
    assert cells.count("1.000") == 4  # its own baseline: min and median, both shapes


def test_gated_splits_unipelt_by_part(tmp_path):
    tiny_dir = tmp_path / "tiny"
    write_tiny_bert(tiny_dir, dataclasses.replace(TINY, vocab_size=1100))
    inference.main(["--model", str(tiny_dir), "--methods", "adapter,prefix,lora,unipelt", "--gated", "--shapes", "2x8",
                    "--rounds", "1", "--warmup", "0", "--threads", "1", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / f"inference_{tiny_dir.name}_cpu_gated.json").read_text())
    assert result["deployed"] == {"finetune": "", "adapter(gated)": "", "prefix(gated)": "prefix folded",
                                  "lora(gated)": "", "unipelt": "prefix folded"}  # a gated LoRA is not merged
