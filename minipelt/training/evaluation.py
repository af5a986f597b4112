"""Evaluation: a model's predictions on a split, their metrics and its mean gate values; for the
training loop (dev and test sets) and eval.py (a checkpoint, or one input: `predict_one`)."""
import numpy as np
import torch

from minipelt.model.classifier import SequenceClassifier
from minipelt.training.device import autocast
from minipelt.data.fewshot import EncodedSplit, batches
from minipelt.data.glue import Task
from minipelt.data.metrics import compute_metrics


def sequence_length(max_seq_length: int, model: SequenceClassifier) -> int:
    """Tokens per example: --max-seq-length, capped by the model's position table so that longer
    inputs are truncated instead of failing in the embeddings (a tiny model may have only 40)."""
    return min(max_seq_length, model.bert.config.max_position_embeddings)


@torch.no_grad()
def predict(model: SequenceClassifier, encoded: EncodedSplit, batch_size: int, device: torch.device,
            precision: str = "fp32") -> tuple[np.ndarray, dict]:
    """Predictions for a split (class ids, or scores for regression) and mean gate values by layer/kind."""
    model.eval()
    by_length = np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")  # less padding
    predictions, gate_sums = [], {}
    for batch in batches(encoded.select(by_length), batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        predictions.append(logits.float() if logits.dim() == 1 else logits.argmax(-1))
        for layer, kinds in model.bert.gate_values().items():
            for kind, value in kinds.items():
                gate_sums[f"{layer}.{kind}"] = gate_sums.get(f"{layer}.{kind}", 0.0) + value.float().sum()
    if not predictions:
        raise ValueError("cannot evaluate on an empty split: the dev set (--dev-size) and every test file "
                         "need at least one example")
    gates = {key: round(float(total) / len(encoded), 6) for key, total in gate_sums.items()}
    in_order = np.empty_like(by_length)
    in_order[by_length] = np.arange(len(by_length))
    return torch.cat(predictions).cpu().numpy()[in_order], gates


def evaluate(model: SequenceClassifier, encoded: EncodedSplit, task: Task, batch_size: int,
             device: torch.device, precision: str = "fp32") -> tuple[dict, dict]:
    """The task's metrics on a labelled split, and the mean gate values."""
    predictions, gates = predict(model, encoded, batch_size, device, precision)
    return compute_metrics(task.metrics, predictions, encoded.labels), gates


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
