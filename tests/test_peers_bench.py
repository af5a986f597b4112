"""bench/speed/peers.py without the peer libraries: a minipelt cell on a tiny model, then the report."""
import argparse
import dataclasses

from conftest import TINY, write_tiny_bert

from bench.speed import peer_cell
from bench.speed.peers_report import markdown, summarise


def test_a_minipelt_cell_times_the_deployed_model_against_the_base_in_the_same_rounds(tmp_path):
    tiny_dir = tmp_path / "tiny"  # a vocabulary past the ids bench batches draw from (1000 and up)
    write_tiny_bert(tiny_dir, dataclasses.replace(TINY, vocab_size=1100))
    results = []
    for method in ("finetune", "unipelt"):
        args = argparse.Namespace(one="minipelt", models=str(tiny_dir), shapes="2x8", methods=method, device="cpu",
                                  threads=1, steps=2, warmup=0, rounds=2, infer_rounds=3)
        cell = dict(model="tiny", shape="2x8", method=method, impl="minipelt")
        results.append(dict(cell, status="ok", seconds=1.0, **peer_cell.measure_cell(args)))  # as peers.run_cell
    unipelt = results[1]
    assert unipelt["merged"] == "prefix folded"
    assert all(len(unipelt[f"rounds_{m}{clock}"]) == 3 for m in ("deployed", "base") for clock in ("_s", "_cpu_s"))

    peer = dict(results[1], impl="adapters", rounds_train_minipelt_cpu_s=[2.0, 1.0, 3.0],
                rounds_train_peer_cpu_s=[4.0, 2.5, 5.0], rounds_train_minipelt_s=[1.0] * 3,
                rounds_train_peer_s=[1.0] * 3)
    failed = dict(model="tiny", shape="2x8", method="prefix", impl="peft", status="failed", seconds=1.0,
                  error="no such library")
    rows = summarise(results + [peer, failed], "cpu")
    of_minima, paired = rows[1]["deployed_vs_base"]
    assert of_minima == min(unipelt["rounds_deployed_cpu_s"]) / min(unipelt["rounds_base_cpu_s"]) and paired > 0
    env = dict(device="cpu", command="python bench/speed/peers.py", note="", date="today", cpu="a cpu", threads=1, steps=2,
               warmup=0, optimizer="AdamW", inputs="random", torch="2", minipelt_commit="abc",
               minipelt_uncommitted_changes=False, minipelt_source="digest", models=["tiny"], shapes=["2x8"])
    table = markdown(env, rows, results).splitlines()
    assert f"| unipelt (minipelt) | {of_minima:.2f} / {paired:.2f} |" in table
    assert "| prefix (peft) | failed |" in table
    assert "| unipelt (adapters) | 0.40 / 0.50 |" in table  # minipelt / peer train: 1 / 2.5 of minima; 0.5, 0.4, 0.6
