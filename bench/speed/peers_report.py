"""bench.speed.peers' tables: per-cell medians, ratios to each side's fine-tuning and to the peer, as markdown.

summarise() turns the raw cell results into rows; markdown() writes the report (a compact
minipelt / peer table, one table per model and shape, and footnotes). Table cells use
bench.speed.speed_report.human for parameter counts.
"""
import statistics

from bench.speed.measure import paired_ratio
from bench.speed.peer_models import PEERS
from bench.speed.speed_report import human


def ms(r: dict, what: str, device: str, clock: str | None = None) -> float:
    """Median of `what` ('train', 'infer', 'merged_infer') in ms: CPU time on CPU, wall on CUDA, or `clock`."""
    clock = clock or ("cpu" if device == "cpu" else "wall")
    return 1e3 * statistics.median(r[f"{what}_cpu_s" if clock == "cpu" else f"{what}_s"])


def summarise(results: list[dict], device: str) -> list[dict]:
    """One row per cell: medians, ratios to its side's fine-tuning, and minipelt over each peer."""
    by_key = {(r["model"], r["shape"], r["method"], r["impl"]): r for r in results}
    rows = []
    for r in results:
        row = {k: r[k] for k in ("model", "shape", "method", "impl", "status")}
        rows.append(row)
        if r["status"] != "ok":
            row["error"] = r["error"]
            continue
        row.update(params_training=r["params_training"], peak_mib=r["train_peak_bytes"] / 2**20,
                   attn_implementation=r.get("attn_implementation", "sdpa (F.scaled_dot_product_attention)"))
        for what in ("train", "infer", "merged_infer"):
            if f"{what}_s" in r:
                row[f"{what}_ms"] = ms(r, what, device)
                row[f"{what}_wall_ms"] = ms(r, what, device, "wall")
        if "merged" in r:
            row["merged"] = r["merged"]
        clock = "_cpu_s" if device == "cpu" else "_s"
        if "rounds_base_s" in r:
            row["deployed_vs_base"] = paired_ratio(r["rounds_deployed" + clock], r["rounds_base" + clock])
        if "rounds_train_peer_s" in r:
            row["train_minipelt_over_peer"] = paired_ratio(r["rounds_train_minipelt" + clock],
                                                           r["rounds_train_peer" + clock])
        ft = by_key.get((r["model"], r["shape"], "finetune", "minipelt" if r["impl"] == "minipelt" else "transformers"))
        if ft and ft["status"] == "ok":
            row["vs_finetune"] = ratios(r, ft, device, deployed_vs_base=True)
        mine = by_key.get((r["model"], r["shape"], r["method"], "minipelt"))
        if r["impl"] != "minipelt" and mine and mine["status"] == "ok":
            row["minipelt_over_peer"] = ratios(mine, r, device)
    return rows


def ratios(a: dict, b: dict, device: str, deployed_vs_base: bool = False) -> dict:
    """a / b for train time, inference, deployed inference (merged where offered) and peak memory.
    With deployed_vs_base, a's deployed inference is divided by b's plain inference (b = fine-tuning)."""
    def deployed(r):
        return ms(r, "merged_infer" if "merged_infer_s" in r else "infer", device)
    return dict(train=ms(a, "train", device) / ms(b, "train", device),
                infer=ms(a, "infer", device) / ms(b, "infer", device),
                deployed=deployed(a) / (ms(b, "infer", device) if deployed_vs_base else deployed(b)),
                peak=a["train_peak_bytes"] / b["train_peak_bytes"] if b["train_peak_bytes"] > 0 else float("nan"))


def rounds(env: dict, key: str) -> str:
    """' (N)' for a run that recorded its round counts (older runs did not)."""
    return f" ({env[key]})" if key in env else ""


def markdown(env: dict, rows: list[dict], results: list[dict]) -> str:
    clock = "process CPU time" if env["device"] == "cpu" else "wall time"
    versions = next((r["versions"] for r in results if "versions" in r), {})
    lines = [
        f"# minipelt vs peer libraries on {env['device']}", "", f"`{env['command']}`", "",
        *([f"Note: {env['note']}", ""] if env["note"] else []),
        f"{env['date']}; {env.get('gpu') or env.get('cpu')}; threads {env['threads']}; median of {env['steps']} "
        f"steps after {env['warmup']} warm-up; fp32; {env['optimizer']}; {env['inputs']}; one process per cell. "
        f"torch {env['torch']}; peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". "
        f"minipelt {env['minipelt_commit']}" + (" with uncommitted changes in minipelt/" if
                                                  env["minipelt_uncommitted_changes"] else "")
        + f" (source digest {env['minipelt_source']})."
        + (f" Load average at start / end: {fmt_load(env['load_average_at_start'])} / "
           f"{fmt_load(env.get('load_average_at_end', ()))}." if "load_average_at_start" in env else ""),
        "",
        f"Times are medians of {clock} in ms" + (" (the `wall` columns: wall-clock)" if env["device"] == "cpu" else "")
        + ". `vs FT`: relative to fine-tuning of the same side in this run (minipelt's fine-tuning for minipelt, "
        "transformers' for the peers); the merged column is relative to fine-tuning's plain inference. "
        "`minipelt / peer`: minipelt's figure over this peer's (train / infer / deployed infer, i.e. merged "
        "where offered / peak memory); below 1 means minipelt is faster or leaner. Params: trainable, "
        "classifier excluded, a prefix with its MLP. Peak memory: " + memory_method(results) + ". "
        "unipelt is UniPELT (APL): minipelt's 'unipelt', adapters' UniPELTConfig(); the peer configs are in "
        "bench/speed/peers.py's docstring.",
    ]
    lines += ["", *compact_table(rows), "", "Deployed inference over the base model of the same side, timed in the same "
              f"rounds{rounds(env, 'infer_rounds')} in one process: the ratio of the minima / the median of the "
              "per-round ratios. Fine-tuning's row compares two base models: the measurement's own floor.", "",
              *pair_table(rows, "deployed_vs_base", "deployed / base inference", with_minipelt=True),
              "", "minipelt's train step over the peer's, fresh models of both timed in the same "
              f"rounds{rounds(env, 'rounds')} in the peer's process: the ratio of the minima / the median of the "
              "per-round ratios.", "",
              *pair_table(rows, "train_minipelt_over_peer", "minipelt / peer train step, same rounds")]
    for model in env["models"]:
        for shape in env["shapes"]:
            lines += ["", f"## {model}, batch {shape.replace('x', ' x ')}", "", *cell_table(
                [r for r in rows if r["model"] == model and r["shape"] == shape])]
    lines += ["", *footnotes(rows, results), ""]
    return "\n".join(lines)


def compact_table(rows: list[dict]) -> list[str]:
    """minipelt / peer per method and setting: train time, deployed inference, peak memory."""
    def cell(row: dict) -> str:
        if "minipelt_over_peer" not in row:
            return "failed"  # the peer's cell or minipelt's
        x = row["minipelt_over_peer"]
        return f"{x['train']:.2f}, {x['deployed']:.2f}, {x['peak']:.2f}"
    return method_table(rows, "minipelt / peer: train, deployed infer, peak", cell)


def pair_table(rows: list[dict], field: str, title: str, with_minipelt: bool = False) -> list[str]:
    """A (ratio of minima, paired median) field of the rows, as `method_table` lays it out."""
    def cell(row: dict) -> str:
        if row["status"] != "ok":
            return "failed"
        of_minima, paired = row[field]
        return f"{of_minima:.2f} / {paired:.2f}"
    return method_table(rows, title, cell, with_minipelt)


def method_table(rows: list[dict], title: str, cell, with_minipelt: bool = False) -> list[str]:
    """A row per method and implementation (the peers, and minipelt where asked), a column per model and
    shape, cell(row) in each; a cell without its row is empty, a row without any cell left out."""
    settings = list(dict.fromkeys((r["model"], r["shape"]) for r in rows))
    by_key = {(r["model"], r["shape"], r["method"], r["impl"]): r for r in rows}
    lines = [f"| {title} | " + " | ".join(f"{m} {s}" for m, s in settings) + " |", "|---|" + "---:|" * len(settings)]
    for method, peers in PEERS.items():
        for impl in ("minipelt",) * with_minipelt + peers:
            keys = [(model, shape, method, impl) for model, shape in settings]
            cells = [cell(by_key[key]) if key in by_key else "" for key in keys]
            if any(cells):
                lines.append(f"| {method} ({impl}) | " + " | ".join(cells) + " |")
    return lines


def cell_table(rows: list[dict]) -> list[str]:
    head = ("| method | implementation | params | train ms | train wall | train vs FT | infer ms | infer vs FT | "
            "merged infer ms (vs FT) | peak MiB (vs FT) | minipelt / peer |")
    lines = [head, "|---|---|" + "---:|" * (head.count("|") - 3)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | {r['impl']} | failed: {r['error'][:120]} |" + " |" * 8)
            continue
        ft = r.get("vs_finetune", {})
        merged = ""
        if "merged_infer_ms" in r:
            merged = f"{r['merged_infer_ms']:.0f}" + (f" ({pct(ft['deployed'])})" if ft else "")
        vs = r.get("minipelt_over_peer")
        lines.append("| " + " | ".join([
            r["method"], r["impl"], human(r["params_training"]), f"{r['train_ms']:.0f}", f"{r['train_wall_ms']:.0f}",
            pct(ft.get("train")), f"{r['infer_ms']:.0f}", pct(ft.get("infer")), merged,
            f"{r['peak_mib']:.0f} ({pct(ft.get('peak'))})",
            f"{vs['train']:.2f} / {vs['infer']:.2f} / {vs['deployed']:.2f} / {vs['peak']:.2f}" if vs else "",
        ]) + " |")
    return lines


def footnotes(rows: list[dict], results: list[dict]) -> list[str]:
    notes = []
    merged = sorted({f"{r['impl']} {r['method']}: {r['merged']}" for r in rows if "merged" in r})
    if merged:
        notes.append("Merged column: " + "; ".join(merged) + ".")
    attn = sorted({f"{r['impl']}: {r['attn_implementation']}" for r in rows if r["impl"] != "minipelt"
                   and "attn_implementation" in r})
    if attn:
        notes.append("Peer attention implementation (config._attn_implementation): " + "; ".join(attn) + ".")
    bad = {key(r): r["frozen_with_grad"][:3] for r in results if r.get("frozen_with_grad")}
    notes.append("Gradient check (one backward): " + (f"FROZEN PARAMETERS GOT GRADIENTS: {bad}" if bad else
                                                      "no frozen parameter received a .grad in any cell."))
    unused = {key(r): r["trainable_without_grad"][:3] for r in results if r.get("trainable_without_grad")}
    if unused:
        notes.append(f"Trainable parameters that got no gradient: {unused}")
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        notes.append("Failed cells: " + "; ".join(f"{key(r)}: {r['error']}" for r in failed) + ".")
    sources = {}
    for r in results:
        if "minipelt_source" in r:
            sources.setdefault(r["minipelt_source"], []).append(f"{r['model']} {r['shape']} {r['method']}")
    if len(sources) > 1:
        notes.append("WARNING: minipelt's source changed during the run; the minipelt cells ran "
                     + "; ".join(f"digest {d}: {', '.join(cells)}" for d, cells in sources.items()) + ".")
    return notes


def key(r: dict) -> str:
    return f"{r['model']} {r['shape']} {r['method']} ({r['impl']})"


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


def fmt_load(load) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def memory_method(results: list[dict]) -> str:
    return next((r["memory_method"] for r in results if "memory_method" in r), "n/a")
