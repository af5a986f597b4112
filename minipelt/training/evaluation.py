"""Evaluation: a model's predictions on a split, their metrics, its mean gate values and (methods with a
prefix) the prefix's share of the attention mass; for the training loop (dev and test sets) and eval.py
(a checkpoint, or one input: `predict_one`)."""
from contextlib import nullcontext

import numpy as np
import torch

from minipelt.data.fewshot import EncodedSplit, batches
from minipelt.data.glue import Task
from minipelt.data.metrics import compute_metrics
from minipelt.model.classifier import SequenceClassifier
from minipelt.training.device import autocast
from minipelt.training.prefix_share import layer_inputs, prefix_share_sums


def sequence_length(max_seq_length: int, model: SequenceClassifier) -> int:
    """Tokens per example: --max-seq-length, capped by the model's position table so that longer
    inputs are truncated instead of failing in the embeddings (a tiny model may have only 40)."""
    return min(max_seq_length, model.bert.config.max_position_embeddings)


@torch.no_grad()
def predict(model: SequenceClassifier, encoded: EncodedSplit, batch_size: int, device: torch.device,
            precision: str = "fp32", prefix_share: bool = False) -> tuple[np.ndarray, dict, list[float] | None]:
    """Predictions for a split (class ids, or scores for regression), mean gate values by "layer.kind",
    and, if `prefix_share`, per layer the prefix's share of the attention mass (prefix_share.py: it
    recomputes q and k, so only where it is kept; None without a prefix or when not asked for)."""
    model.eval()
    bert = model.bert
    by_length = np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")  # less padding
    predictions, gate_sums, share_sums, share_count = [], {}, 0.0, 0
    with layer_inputs(bert) if prefix_share and bert.prefix is not None else nullcontext() as inputs:
        for batch in batches(encoded.select(by_length), batch_size, shuffle=False):
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, precision):
                logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                for layer, kinds in bert.gate_values().items():  # before prefix_share_sums reruns the gates
                    for kind, value in kinds.items():
                        gate_sums[f"{layer}.{kind}"] = gate_sums.get(f"{layer}.{kind}", 0.0) + value.float().sum()
                if inputs is not None:
                    sums, count = prefix_share_sums(bert, inputs, batch["attention_mask"].bool())
                    share_sums, share_count = share_sums + sums, share_count + count
            predictions.append(logits.float() if logits.dim() == 1 else logits.argmax(-1))
    if not predictions:
        raise ValueError("cannot evaluate on an empty split: the dev set (--dev-size) and every test file "
                         "need at least one example")
    gates = {key: round(float(total) / len(encoded), 6) for key, total in gate_sums.items()}
    shares = None if inputs is None else [round(float(s), 6) for s in share_sums / share_count]
    in_order = np.empty_like(by_length)
    in_order[by_length] = np.arange(len(by_length))
    return torch.cat(predictions).cpu().numpy()[in_order], gates, shares


def evaluate(model: SequenceClassifier, encoded: EncodedSplit, task: Task, batch_size: int,
             device: torch.device, precision: str = "fp32", prefix_share: bool = False
             ) -> tuple[dict, dict, list[float] | None]:
    """The task's metrics on a labelled split, the mean gate values and (if asked) the prefix's attention share."""
    predictions, gates, shares = predict(model, encoded, batch_size, device, precision, prefix_share)
    return compute_metrics(task.metrics, predictions, encoded.labels), gates, shares


@torch.no_grad()
def predict_one(model: SequenceClassifier, encoded: EncodedSplit, task: Task, device: torch.device,
                precision: str = "fp32") -> dict:
    """One input's prediction: its label and class probabilities (its score for regression), and for a
    gated method its gate values, {layer: {kind: G}} (BertModel.gate_values())."""
    if len(encoded) != 1:
        raise ValueError(f"predict_one takes one example, got {len(encoded)}")
    model.eval()
    batch = {k: v.to(device) for k, v in next(batches(encoded, 1, shuffle=False)).items()}
    with autocast(device, precision):
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float()[0]
    if task.is_regression:
        out = {"score": round(float(logits), 6)}
    else:
        probabilities = logits.softmax(-1)
        out = {"label": task.label_names[int(probabilities.argmax())],
               "probabilities": {name: round(float(p), 6) for name, p in zip(task.label_names, probabilities)}}
    gates = {str(layer): {kind: round(float(value[0]), 6) for kind, value in kinds.items()}
             for layer, kinds in model.bert.gate_values().items()}
    return {**out, **({"gates": gates} if gates else {})}
