"""bench/speed/speed_report.py: ratios to fine-tuning beside the paper's Table 4, also for a method the paper lacks."""
from bench.grid import paper
from bench.speed.speed_report import human, markdown, summarise


def measured(method: str, seconds: float, peak: int) -> dict:
    return dict(method=method, params=1000 if method != "finetune" else 100_000, params_training=1000,
                train_s=[seconds] * 3, train_cpu_s=[seconds] * 3, infer_s=[seconds / 2] * 3,
                infer_cpu_s=[seconds / 2] * 3, train_peak_bytes=peak, memory_method="peak RSS",
                frozen_with_grad=[], trainable_without_grad=[])


def test_ratios_to_finetuning_and_a_method_the_paper_lacks():
    results = {"finetune": measured("finetune", 0.2, 200 * 2**20), "lora": measured("lora", 0.1, 50 * 2**20),
               "adapter+lora": measured("adapter+lora", 0.15, 100 * 2**20)}
    rows = summarise(results, cpu_time=True)
    assert rows["lora"]["train_pct"] == 50 and rows["lora"]["infer_cpu_pct"] == 50
    assert rows["lora"]["train_peak_pct"] == 25 and rows["lora"]["params_pct"] == 1
    assert rows["lora"]["paper"] == dict(zip(("params", "train_pct", "infer_pct"), paper.TABLE4["lora"]))
    env = dict(model="tiny", device="cpu", command="python bench/speed/speed.py", date="today", torch="2", cpu="a cpu",
               threads=1, batch_size=2, seq_len=8, steps=3, warmup=1, optimizer="AdamW", inputs="random")
    table = markdown(env, rows, results)
    lora_row = next(line for line in table.splitlines() if line.startswith("| lora |"))
    assert f"| {paper.TABLE4['lora'][1]}% |" in lora_row
    new_row = next(line for line in table.splitlines() if line.startswith("| adapter+lora |"))
    assert new_row.count("| - |") == 3  # no params, train or inference figure in the paper
    assert human(1_410_672) == "1.41M" and human(894_528) == "895K" and human(12) == "12"
