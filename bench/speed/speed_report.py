"""The speed benchmark's report: medians and ratios to fine-tuning beside the paper's Table 4, as markdown."""
import statistics

from bench.grid import paper


def human(n: int) -> str:
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def percent(value) -> str:
    """A paper's percentage, or '-' for a method the paper does not have."""
    return "-" if value == "-" else f"{value}%"


def summarise(results: dict, cpu_time: bool) -> dict:
    """Medians (ms) and ratios to fine-tuning (%), per method; with cpu_time also the process-CPU-time ones."""
    ft = results["finetune"]
    med = statistics.median
    clocks = ("", "_cpu") if cpu_time else ("",)
    rows = {}
    for method, r in results.items():
        row = dict(params=r["params"], params_training=r["params_training"],
                   params_pct=100 * r["params"] / ft["params"],
                   train_peak_mib=r["train_peak_bytes"] / 2**20,
                   train_peak_pct=100 * r["train_peak_bytes"] / ft["train_peak_bytes"],
                   paper=dict(zip(("params", "train_pct", "infer_pct"), paper.TABLE4.get(method, ("-",) * 3))))
        if "merged" in r:
            row["merged"] = r["merged"]
        for clock in clocks:
            for what, ref in (("train", "train"), ("infer", "infer"), ("merged_infer", "infer")):
                key = f"{what}{clock}_s"
                if key in r:
                    row[f"{what}{clock}_ms"] = 1e3 * med(r[key])
                    row[f"{what}{clock}_pct"] = 100 * med(r[key]) / med(ft[f"{ref}{clock}_s"])
        rows[method] = row
    return rows

def markdown(env: dict, rows: dict, results: dict) -> str:
    where = env.get("gpu") or env.get("cpu")
    cpu_time = "train_cpu_pct" in rows["finetune"]
    lines = [
        f"# Speed of the PELT methods: {env['model']} on {env['device']}",
        "",
        f"`{env['command']}`",
        "",
        *([f"Note: {env['note']}", ""] if env.get("note") else []),
        f"{env['date']}; torch {env['torch']}; {where}; threads {env['threads']}; batch {env['batch_size']} "
        f"x length {env['seq_len']}; median of {env['steps']} steps after {env['warmup']} warm-up; "
        f"fp32; {env['optimizer']}; {env['inputs']}."
        + (f" Load average at start / end: {', '.join(f'{x:.2f}' for x in env['load_average_at_start'])} / "
           f"{', '.join(f'{x:.2f}' for x in env.get('load_average_at_end', ()))}."
           if "load_average_at_start" in env else ""),
        "",
        "Percentages are relative to fine-tuning in this run; the paper's columns are its Table 4 "
        "(bert-base, GPU). Params exclude the task head; the prefix is counted folded (with its MLP "
        "in brackets). Peak memory: " + results["finetune"]["memory_method"] + ".",
    ]
    if cpu_time:
        lines += ["", "Times are wall-clock; the `cpu %` columns are the same ratios in process CPU time "
                      "(time.process_time), which other jobs on a shared CPU do not inflate: trust those "
                      "when the load average exceeds the free cores."]
    head = ("| method | params | paper | train ms | train % | " + ("train cpu % | " if cpu_time else "")
            + "paper train % | infer ms | infer % | " + ("infer cpu % | " if cpu_time else "")
            + "paper infer % | merged/folded infer ms (%" + (", cpu %" if cpu_time else "") + ") | train peak MiB (%) |")
    lines += ["", head, "|---|" + "---:|" * (head.count("|") - 2)]
    for method, r in rows.items():
        params = human(r["params"])
        if r["params_training"] != r["params"]:
            params += f" ({human(r['params_training'])})"
        merged = ""
        if "merged_infer_ms" in r:
            merged = f"{r['merged_infer_ms']:.0f} ({r['merged_infer_pct']:.0f}%"
            merged += f", {r['merged_infer_cpu_pct']:.0f}%)" if cpu_time else ")"
        p = r["paper"]
        cells = [method, params, p["params"], f"{r['train_ms']:.0f}", f"{r['train_pct']:.0f}%"]
        cells += [f"{r['train_cpu_pct']:.0f}%"] if cpu_time else []
        cells += [percent(p["train_pct"]), f"{r['infer_ms']:.0f}", f"{r['infer_pct']:.0f}%"]
        cells += [f"{r['infer_cpu_pct']:.0f}%"] if cpu_time else []
        cells += [percent(p["infer_pct"]), merged, f"{r['train_peak_mib']:.0f} ({r['train_peak_pct']:.0f}%)"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{m}: {r['merged']}" for m, r in results.items() if "merged" in r]
    lines += [""]
    if notes:
        lines.append("Merged/folded column: " + "; ".join(notes) + " (a gated LoRA cannot be merged; a folded "
                     "prefix still attends to its L extra keys).")
    bad = {m: r["frozen_with_grad"] for m, r in results.items() if r["frozen_with_grad"]}
    lines.append("Gradient check (one backward): " + (
        f"FROZEN PARAMETERS GOT GRADIENTS: {bad}" if bad else "no frozen parameter received a .grad in any method."))
    unused = {m: r["trainable_without_grad"] for m, r in results.items() if r["trainable_without_grad"]}
    if unused:
        lines.append(f"Trainable parameters that got no gradient: {unused}")
    spread = ", ".join(f"{m} {1e3 * min(r['train_s']):.0f}-{1e3 * max(r['train_s']):.0f}"
                       for m, r in results.items())
    lines += ["", f"Train step range (min-max wall ms over the measured steps): {spread}.", ""]
    return "\n".join(lines)
