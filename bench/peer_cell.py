"""One bench.peers cell, measured in this process: speed.measure_one's protocol, on minipelt or a peer.

A minipelt cell runs bench.speed.measure_one itself; a peer cell (bench.peer_models) runs the same
steps on the peer's model: train steps under bench.measure.PeakMemory and timed, the gradient check,
inference, and inference again after the peer's merge where it has one.
"""
import argparse
import hashlib
import sys

import torch

from bench import speed  # the protocol (speed.measure_one) and its helpers
from bench.measure import inference_times, parse_shape, train_then_infer
from bench.peer_models import build_peer
from bench.speed import ROOT, gradient_check, make_batch


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

    result.update(train_then_infer(model, forward, batch["labels"], optimizer, args.steps, args.warmup, device,
                                   lambda: gradient_check(model, batch)))
    if merge is not None:
        result["merged"] = merge(model)
        result["merged_infer_s"], result["merged_infer_cpu_s"] = inference_times(forward, args.steps, args.warmup, device)
    return result


def measure_minipelt(args, method: str) -> dict:
    batch_size, seq_len = parse_shape(args.shapes)
    one = argparse.Namespace(model=args.models, device=args.device, batch_size=batch_size, seq_len=seq_len,
                             steps=args.steps, warmup=args.warmup, precision="fp32")
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
