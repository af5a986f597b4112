"""One bench.speed.peers cell, measured in this process: speed.measure_one's protocol, on minipelt or a peer.

A minipelt cell runs bench.speed.speed.measure_one itself; a peer cell (bench.speed.peer_models) runs the same
steps on the peer's model: train steps under bench.speed.measure.PeakMemory and timed, the gradient check,
inference, and inference again after the peer's merge where it has one. Then, in both, fresh models
of the cell, deployed, and of its side's base model, timed in the same rounds; and in a peer cell,
fresh peer and minipelt models of the method, their train steps timed in the same rounds.
"""
import argparse
import hashlib
import sys
from functools import partial

import torch

from bench.speed import speed  # the protocol (speed.measure_one) and its helpers
from bench.speed.measure import inference_times, make_train_step, parse_shape, time_rounds, train_then_infer
from bench.speed.peer_models import build_peer
from bench.speed.speed import ROOT, gradient_check, make_batch


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


def config_of(model):
    """The BERT config of a minipelt SequenceClassifier or of a peer (Logits): make_batch reads its vocab_size."""
    return model.bert.config if hasattr(model, "bert") else model.hf.config


def train_against_minipelt(args, library: str, method: str) -> dict:
    """The peer's train step and minipelt's, fresh models of the same method, timed in the same rounds
    in this process: separate processes differ here by up to 15%, as much as the two differ."""
    device = torch.device(args.device)
    peer, _ = build_peer(args.models, library, method)
    models = {"peer": peer.to(device), "minipelt": speed.build_model(args.models, method, device)}
    steps = {}
    for name, model in models.items():
        batch = make_batch(config_of(model), *parse_shape(args.shapes), device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        steps[name] = make_train_step(partial(model, *inputs), batch["labels"], optimizer)
        model.train()
    return round_fields("rounds_train_", time_rounds(steps, args.rounds, args.warmup, device))


def round_fields(prefix: str, times: dict) -> dict:
    """time_rounds' {name: (wall, cpu)} as the cell's JSON fields: {prefix}{name}_s and {prefix}{name}_cpu_s."""
    return {f"{prefix}{name}{clock}": times[name][i] for name in times for i, clock in enumerate(("_s", "_cpu_s"))}


def deployed_and_base(args, impl: str, method: str) -> tuple:
    """Fresh models of this cell, in eval mode: the method deployed (merged or folded where the
    implementation offers it) and its side's plain base model (fine-tuning's: minipelt's own BERT, or
    transformers' for the peers), each with the classifier head. Untrained: speed does not depend on
    the values of the weights."""
    device = torch.device(args.device)
    if impl == "minipelt":
        deployed, base = speed.build_model(args.models, method, device), speed.build_model(args.models, "finetune", device)
        speed.deploy(deployed)
    else:
        deployed, merge = build_peer(args.models, impl, method)
        if merge is not None:
            merge(deployed)
        base, _ = build_peer(args.models, "transformers", "finetune")
    return deployed.to(device).eval(), base.to(device).eval()


def deployed_against_base(args, impl: str, method: str) -> dict:
    """The deployed model and the base model timed in the same rounds (bench.speed.measure.time_rounds):
    separate processes differ here by more than a method adds to inference."""
    device = torch.device(args.device)
    deployed, base = deployed_and_base(args, impl, method)
    batch = make_batch(config_of(base), *parse_shape(args.shapes), device)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        times = time_rounds({"deployed": lambda: deployed(*inputs), "base": lambda: base(*inputs)},
                            args.infer_rounds, args.warmup, device)
    return round_fields("rounds_", times)


def measure_cell(args) -> dict:
    """This process's one cell: implementation args.one, the single model, shape and method given."""
    torch.set_num_threads(args.threads)
    if args.one == "minipelt":
        result = measure_minipelt(args, args.methods)
    else:
        result = measure_peer(args, args.one, args.methods)
        result["versions"] = library_versions()
    result.update(deployed_against_base(args, args.one, args.methods))
    if args.one != "minipelt":
        result.update(train_against_minipelt(args, args.one, args.methods))
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
