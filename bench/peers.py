"""minipelt against the peer libraries (transformers, peft, adapters): same methods, shapes, protocol.

    python bench/peers.py --peer-python /path/to/peer-venv/bin/python            # the whole table
    python bench/peers.py --models minilm --shapes 16x128 --methods lora,unipelt --steps 2 \
        --peer-python /path/to/peer-venv/bin/python                               # a part of it

(minipelt installed with `pip install -e .`; without it, `python -m bench.peers` from the repository root.)

The peers are optional (bench/requirements-peers.txt) and never a dependency of minipelt: install
them into any interpreter and pass it as --peer-python. Peer cells run under that interpreter,
minipelt cells under the current one.

A cell is model x shape x method x implementation, measured in a fresh process of its own (so
that no cell's peak memory hides another's):

    models     minilm     the all-MiniLM-L6-v2 weights in weights/minilm
               bert-base  RANDOM weights of bert-base's shape (../shared/configs/bert-base-uncased.json):
                          speed does not depend on the weights
    shapes     16x128, 4x512 (batch x length): random token ids, no padding, the same batch for all
    minipelt   SequenceClassifier(pooling='cls', 2 labels) with PeltConfig.from_method(method)
    peers      Hugging Face BertForSequenceClassification (2 labels) with
      finetune   transformers  every parameter trains
      bitfit     transformers  every bias (+ the classifier)
      adapter    adapters      SeqBnConfig(reduction_factor=16, non_linearity="relu")
      prefix     adapters      PrefixTuningConfig(prefix_length=10, bottleneck_size=512, flat=False)
                 peft          PrefixTuningConfig(num_virtual_tokens=10, prefix_projection=True,
                               encoder_hidden_size=512)
      lora       peft          LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                               lora_dropout=0)
      unipelt    adapters      UniPELTConfig(): gated prefix + adapter + LoRA (minipelt: UniPELT APL)
    Under every method the classifier trains too. Both sides: fp32, train-mode dropout as the
    model config says (0.1), loss computed outside the model on the logits.

What a cell measures is bench/speed.py's protocol; a minipelt cell runs speed.measure_one itself:

    train step   train mode; forward, cross-entropy, backward, AdamW (torch's default implementation,
                 lr 1e-5) over the trainable parameters, zero_grad(set_to_none=True)
    inference    eval mode under no_grad, the same batch
    merged       inference again in the deployable form the implementation offers: minipelt merges
                 an ungated LoRA and folds the prefix; peft merges LoRA (merge_and_unload); adapters
                 ejects the prefix MLP (eject_prefix_tuning). peft's prefix, adapters' gated LoRA,
                 the adapter, BitFit and fine-tuning have none.
    times        median over --steps calls after --warmup calls, of process CPU time
                 (time.process_time, all threads; other jobs on a shared CPU do not inflate it) and of
                 wall time. Ratios use CPU time on CPU and wall time on CUDA.
    peak memory  bench.measure.PeakMemory over the warm-up and measured train steps. CPU: peak RSS
                 increase over the RSS just before them. CUDA: allocator peak over the allocation then.
    params       trainable parameters without the classifier (a prefix counted with its MLP)

Every cell is also given relative to fine-tuning of its own side in the same run (minipelt's, or
transformers' for the peers), and minipelt relative to each peer. A cell that fails is reported
as failed (e.g. peft's prefix at length 512) and the run goes on.
Results: bench/results/peers_<device>.json and .md.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import speed  # the protocol (speed.measure_one) and its helpers
from bench.measure import PeakMemory, cpu_name, timed
from bench.speed import BERT_BASE_CONFIG, NUM_LABELS, RESULTS_DIR, ROOT, gradient_check, make_batch
from bench.speed_report import human

MODELS = {"minilm": ROOT / "weights" / "minilm", "bert-base": BERT_BASE_CONFIG}
SHAPES = ("16x128", "4x512")
PEERS = {  # method -> the peer libraries that implement it, in table order
    "finetune": ("transformers",),
    "bitfit": ("transformers",),
    "adapter": ("adapters",),
    "prefix": ("adapters", "peft"),
    "lora": ("peft",),
    "unipelt": ("adapters",),
}
METHODS = tuple(PEERS)
ADAPTER_NAME = "peer"  # the name of the adapters-library module added to the model


# ----------------------------------------------------------------------------------------------
# One cell, in its own process
# ----------------------------------------------------------------------------------------------

class Logits(nn.Module):
    """A Hugging Face classifier called like minipelt's: model(input_ids, attention_mask, token_type_ids)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def hf_classifier(model: str) -> nn.Module:
    """BertForSequenceClassification: MiniLM's weights, or random init in bert-base's shape."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if model == "bert-base":
        config = BertConfig.from_json_file(MODELS[model])
        config.num_labels = NUM_LABELS
        return BertForSequenceClassification(config)
    return BertForSequenceClassification.from_pretrained(MODELS[model], num_labels=NUM_LABELS, dtype=torch.float32)


def adapters_config(method: str):
    import adapters

    return {
        "adapter": lambda: adapters.SeqBnConfig(reduction_factor=16, non_linearity="relu"),
        "prefix": lambda: adapters.PrefixTuningConfig(prefix_length=10, bottleneck_size=512, flat=False),
        "unipelt": lambda: adapters.UniPELTConfig(),
    }[method]()


def peft_config(method: str):
    import peft

    if method == "lora":
        return peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"],
                               lora_dropout=0.0)
    return peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=10, prefix_projection=True,
                                   encoder_hidden_size=512)


def build_peer(model: str, library: str, method: str) -> tuple[Logits, object]:
    """The peer's model with `method` added and only its parameters and the classifier trainable,
    and merge(model) -> what it did, turning the model into its deployable form (None: no such form)."""
    hf = hf_classifier(model)
    if library == "transformers":
        for name, p in hf.named_parameters():
            p.requires_grad_(method == "finetune" or name.endswith(".bias") or name.startswith("classifier."))
        return Logits(hf), None
    if library == "peft":
        import peft

        wrapped = Logits(peft.get_peft_model(hf, peft_config(method)))  # SEQ_CLS: the classifier trains too
        if method != "lora":
            return wrapped, None

        def merge_lora(m: Logits) -> str:
            m.hf = m.hf.merge_and_unload()
            return "LoRA merged (merge_and_unload)"
        return wrapped, merge_lora
    if library == "adapters":
        import adapters

        adapters.init(hf)
        hf.add_adapter(ADAPTER_NAME, config=adapters_config(method))
        hf.train_adapter(ADAPTER_NAME)  # freezes the base model, activates the adapter
        for p in hf.classifier.parameters():
            p.requires_grad_(True)
        if method == "adapter":
            return Logits(hf), None

        def eject_prefix(m: Logits) -> str:
            m.hf.eject_prefix_tuning(ADAPTER_NAME)
            return "prefix ejected (flat)"  # UniPELT's LoRA is gated: adapters cannot merge it
        return Logits(hf), eject_prefix
    raise ValueError(f"unknown peer library {library!r}")


def measure_peer(args, library: str, method: str) -> dict:
    """speed.measure_one's protocol, on a peer's model."""
    device = torch.device(args.device)
    model, merge = build_peer(args.models, library, method)
    model.to(device)
    batch_size, seq_len = parse_shape(args.shapes)
    batch = make_batch(model.hf.config, batch_size, seq_len, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)  # torch's default implementation for the device
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    head = sum(k for n, k in trainable.items() if ".classifier." in f".{n}")
    result = dict(params_training=sum(trainable.values()) - head, head=head,
                  attn_implementation=model.hf.config._attn_implementation)

    def forward():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def train_step():
        F.cross_entropy(forward(), batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def inference_times() -> tuple[list[float], list[float]]:
        with torch.no_grad():
            timed(forward, args.warmup, device)
            return timed(forward, args.steps, device)

    model.train()
    memory = PeakMemory(device)
    memory.start()
    timed(train_step, args.warmup, device)
    train, train_cpu = timed(train_step, args.steps, device)
    result.update(train_peak_bytes=memory.stop(), memory_method=memory.how)
    result.update(gradient_check(model, batch))  # after the memory measurement, as in speed.py

    model.eval()
    infer, infer_cpu = inference_times()
    result.update(train_s=train, train_cpu_s=train_cpu, infer_s=infer, infer_cpu_s=infer_cpu)
    if merge is not None:
        result["merged"] = merge(model)
        result["merged_infer_s"], result["merged_infer_cpu_s"] = inference_times()
    return result


def measure_minipelt(args, method: str) -> dict:
    batch_size, seq_len = parse_shape(args.shapes)
    one = argparse.Namespace(model=args.models, device=args.device, batch_size=batch_size, seq_len=seq_len,
                             steps=args.steps, warmup=args.warmup)
    return dict(speed.measure_one(one, method), minipelt_source=source_digest())


def measure_cell(args) -> dict:
    """This process's one cell: implementation args.one, the single model, shape and method given."""
    torch.set_num_threads(args.threads)
    if args.one == "minipelt":
        result = measure_minipelt(args, args.methods)
    else:
        result = measure_peer(args, args.one, args.methods)
        result["versions"] = library_versions()
    return dict(result, python=sys.executable, torch=torch.__version__, threads=torch.get_num_threads())


def library_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "peft", "adapters")}


def source_digest() -> str:
    """Which minipelt code ran: sha256 of minipelt/*.py, 12 hex digits (the tree may be uncommitted)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "minipelt").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def parse_shape(shape: str) -> tuple[int, int]:
    batch_size, seq_len = shape.split("x")
    return int(batch_size), int(seq_len)


# ----------------------------------------------------------------------------------------------
# The whole run: one subprocess per cell, then the tables
# ----------------------------------------------------------------------------------------------

def all_cells(args) -> list[dict]:
    """(model, shape, method, implementation) in table order; fine-tuning is always included."""
    methods = [m for m in METHODS if m == "finetune" or m in args.methods]
    return [dict(model=model, shape=shape, method=method, impl=impl)
            for model in args.models for shape in args.shapes for method in methods
            for impl in ("minipelt",) + PEERS[method]]


def run_cell(args, cell: dict) -> dict:
    """Measure one cell in a fresh process; a failure is recorded with its error, not raised."""
    python = sys.executable if cell["impl"] == "minipelt" else args.peer_python
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        # -m from the repository root: minipelt and bench import without being installed there.
        command = [python, "-m", "bench.peers", "--one", cell["impl"], "--models", cell["model"],
                   "--shapes", cell["shape"], "--methods", cell["method"], "--device", args.device,
                   "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--json-out", str(out)]
        start = time.time()
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        seconds = round(time.time() - start, 1)
        if done.returncode == 0 and out.is_file():
            return dict(cell, status="ok", seconds=seconds, **json.loads(out.read_text()))
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return dict(cell, status="failed", seconds=seconds, error=lines[-1] if lines else f"exit {done.returncode}",
                log_tail=lines[-30:])


def run_all(args) -> list[dict]:
    results = []
    for cell in all_cells(args):
        print(f"--- {cell['model']} {cell['shape']} {cell['method']:9} {cell['impl']:12}", end=" ", flush=True)
        r = run_cell(args, cell)
        if r["status"] == "ok":
            print(f"train {ms(r, 'train', args.device):.0f} ms, infer {ms(r, 'infer', args.device):.0f} ms, "
                  f"peak {r['train_peak_bytes'] / 2**20:.0f} MiB ({r['seconds']:.0f} s)", flush=True)
        else:
            print(f"FAILED ({r['seconds']:.0f} s): {r['error']}", flush=True)
        results.append(r)
    return results


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


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def environment(args) -> dict:
    env = dict(
        command="python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        python=platform.python_version(), torch=torch.__version__, peer_python=args.peer_python,
        device=args.device, threads=args.threads, steps=args.steps, warmup=args.warmup,
        models=args.models, shapes=args.shapes, methods=args.methods, precision="fp32",
        optimizer="torch.optim.AdamW, default implementation, lr 1e-5, no gradient clipping",
        inputs="random token ids, no padding (attention_mask all ones)",
        minipelt_commit=git("rev-parse", "--short", "HEAD"),
        minipelt_uncommitted_changes=bool(git("status", "--porcelain", "--", "minipelt")),
        minipelt_source=source_digest(), note=args.note,
    )
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    else:
        env["cpu"] = cpu_name()
        env["load_average_at_start"] = os.getloadavg()
    return env


def git(*command: str) -> str:
    try:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


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
        "bench/peers.py's docstring.",
    ]
    lines += ["", *compact_table(rows)]
    for model in env["models"]:
        for shape in env["shapes"]:
            lines += ["", f"## {model}, batch {shape.replace('x', ' x ')}", "", *cell_table(
                [r for r in rows if r["model"] == model and r["shape"] == shape])]
    lines += ["", *footnotes(rows, results), ""]
    return "\n".join(lines)


def compact_table(rows: list[dict]) -> list[str]:
    """minipelt / peer per method and setting: train time, deployed inference, peak memory."""
    settings = list(dict.fromkeys((r["model"], r["shape"]) for r in rows))
    head = "| minipelt / peer: train, deployed infer, peak | " + " | ".join(f"{m} {s}" for m, s in settings) + " |"
    lines = [head, "|---|" + "---:|" * len(settings)]
    for method, peers in PEERS.items():
        for peer in peers:
            cells = []
            for model, shape in settings:
                row = next((r for r in rows if (r["model"], r["shape"], r["method"], r["impl"])
                            == (model, shape, method, peer)), None)
                if row is None:
                    cells.append("")
                elif "minipelt_over_peer" in row:
                    x = row["minipelt_over_peer"]
                    cells.append(f"{x['train']:.2f}, {x['deployed']:.2f}, {x['peak']:.2f}")
                else:
                    cells.append("failed")
            if any(cells):
                lines.append(f"| {method} ({peer}) | " + " | ".join(cells) + " |")
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


# ----------------------------------------------------------------------------------------------

def comma_list(choices):
    def parse(text: str) -> list[str]:
        items = [t for t in text.split(",") if t]
        unknown = [t for t in items if t not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}: choose from {', '.join(choices)}")
        return items
    return parse


def shape_list(text: str) -> list[str]:
    shapes = [t for t in text.split(",") if t]
    if not shapes or not all(re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", t) for t in shapes):
        raise argparse.ArgumentTypeError(f"{text!r}: give BATCHxLENGTH, comma-separated (e.g. 16x128,4x512)")
    return shapes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=comma_list(tuple(MODELS)), default=list(MODELS), help="comma-separated")
    parser.add_argument("--shapes", type=shape_list, default=list(SHAPES),
                        help="comma-separated batch x length, e.g. 16x128,4x512")
    parser.add_argument("--methods", type=comma_list(METHODS), default=list(METHODS),
                        help="comma-separated; finetune is always added")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every cell")
    parser.add_argument("--steps", type=int, default=5, help="measured calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls before the measured ones")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter with transformers, peft, adapters (bench/requirements-peers.txt)")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    parser.add_argument("--note", default="", help="a remark written into the .md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one cell in this process
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")

    if args.one:
        args.models, args.shapes, args.methods = args.models[0], args.shapes[0], args.methods[0]
        Path(args.json_out).write_text(json.dumps(measure_cell(args)))
        return

    env = environment(args)
    results = run_all(args)
    if args.device == "cpu":
        env["load_average_at_end"] = os.getloadavg()
    rows = summarise(results, args.device)
    text = markdown(env, rows, results)
    print(text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"peers_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, summary=rows, raw=results), indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
