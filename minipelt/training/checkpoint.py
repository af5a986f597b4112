"""Checkpoints of the trainable parameters only (safetensors), with the method config inside.

A checkpoint is small (a PELT method's few hundred thousand values plus the head) and goes
onto a freshly loaded base model. Its metadata holds what rebuilds the model around it: the
method (PeltConfig), the head (labels, pooling), the base model's config and a fingerprint of
its weights, so it never lands on the wrong base. Every write is atomic (temp file, fsync, rename).
"""
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import PeltConfig, trainable_state_dict


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename onto path, so a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def weights_fingerprint(bert: BertModel) -> str:
    """A short hash of frozen base weights (the word embeddings' first rows)."""
    rows = bert.embeddings.word_embeddings.weight[:16].detach().float().cpu().contiguous()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()[:16]


def save_trainable(model: SequenceClassifier, path, **extra: str) -> None:
    bert = model.bert
    tensors = {n: t.contiguous().cpu() for n, t in trainable_state_dict(model, bert.pelt).items()}
    metadata = {
        "pelt": bert.pelt.to_json(),
        "num_labels": str(model.num_labels),
        "pooling": model.pooling,
        "bert_config": json.dumps(asdict(bert.config), sort_keys=True),
        "base_fingerprint": weights_fingerprint(bert),
        **extra,
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata))


def read_metadata(path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: pass the best.safetensors that train.py "
                                f"wrote into its --output-dir")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({e})") from e
    if "pelt" not in metadata:
        raise ValueError(f"{path} is not a minipelt checkpoint (no method config in its metadata)")
    return metadata


def load_trainable(model: SequenceClassifier, path, meta: dict[str, str] | None = None) -> dict[str, str]:
    """Copy a checkpoint's tensors into `model`, after checking it was made for this model.
    `meta`: the checkpoint's metadata, if already read."""
    meta = meta or read_metadata(path)
    bert = model.bert
    saved = PeltConfig.from_json(meta["pelt"])
    if saved != bert.pelt:
        raise ValueError(f"{path} was trained with method {saved.name} ({saved}), but the model has "
                         f"{bert.pelt.name} ({bert.pelt}): build the model with the checkpoint's method")
    if json.loads(meta["bert_config"]) != asdict(bert.config):
        raise ValueError(f"{path} was trained on a base model of another shape "
                         f"({meta['bert_config']}): load the base model it was trained on")
    fingerprint = weights_fingerprint(bert)
    if meta["base_fingerprint"] != fingerprint and not bert.pelt.finetune:  # finetune saves everything
        raise ValueError(f"{path} was trained on other base weights than the ones loaded "
                         f"(fingerprint {meta['base_fingerprint']} vs {fingerprint}): "
                         f"pass the --model it was trained with (see its results.json)")
    tensors = load_file(str(path))
    if "bert.prefix.folded" in tensors and bert.prefix is not None:
        bert.prefix.fold()  # a checkpoint saved after folding holds P_K, P_V instead of the MLP
    expected = trainable_state_dict(model, bert.pelt)
    if set(tensors) != set(expected):
        raise ValueError(f"{path} does not hold this model's trainable tensors: missing "
                         f"{sorted(set(expected) - set(tensors))}, unexpected {sorted(set(tensors) - set(expected))}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in tensors:
                param.copy_(tensors[name])
    return meta


def model_from_checkpoint(path, base_model, meta: dict[str, str] | None = None) -> SequenceClassifier:
    """Base weights (a fetched name or directory) + a checkpoint -> the trained model, eval mode."""
    meta = meta or read_metadata(path)
    bert = BertModel.from_pretrained(base_model, PeltConfig.from_json(meta["pelt"]))
    model = SequenceClassifier(bert, int(meta["num_labels"]), meta["pooling"])
    load_trainable(model, path, meta)
    return model.eval()
