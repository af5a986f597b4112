"""Trainable parameters per kind, like PEFT's print_trainable_parameters but split by module.

    python -m minipelt.summary --config ../shared/configs/bert-base-uncased.json --method unipelt

Built on the meta device from config.json alone: no weights are loaded or allocated.
"""
import argparse
import sys
from collections import Counter

import torch

from minipelt.model.bert import BertConfig, BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import PELT_KINDS, PeltConfig, is_trainable, parameter_kind

KINDS = (*PELT_KINDS, "bias", "base", "head")  # the report's lines, in order


def count_trainable(model: SequenceClassifier, folded_prefix: bool = False) -> Counter:
    """Trainable parameters per kind (see methods.parameter_kind); 'base_total' = the frozen BERT's size.
    folded_prefix: the prefix counted as the P_K, P_V its MLP folds into (N * 2 * L * H), not the MLP."""
    pelt = model.bert.pelt
    counts = Counter()
    for name, p in model.named_parameters():
        kind = parameter_kind(name)
        if is_trainable(name, pelt):
            counts[kind] += p.numel()
        if kind in ("base", "bias"):
            counts["base_total"] += p.numel()
    if folded_prefix and counts["prefix"]:
        counts["prefix"] = model.bert.prefix().numel()
    return counts


def report(model: SequenceClassifier) -> str:
    counts = count_trainable(model, folded_prefix=True)  # the inference-time size: the MLP is scaffolding
    base, training_prefix = counts["base_total"], count_trainable(model)["prefix"]
    lines = [f"method {model.bert.pelt.name}: trainable parameters by kind (base model {base:,})",
             f"  {'kind':10s} {'params':>12s} {'% of base':>10s}"]
    for kind in KINDS:
        if counts[kind]:
            note = f"   ({training_prefix:,} while training, with the MLP)" if kind == "prefix" else ""
            lines.append(f"  {kind:10s} {counts[kind]:>12,} {100 * counts[kind] / base:>9.3f}%{note}")
    pelt_total = sum(counts[k] for k in KINDS if k != "head")
    lines.append(f"  {'total':10s} {pelt_total:>12,} {100 * pelt_total / base:>9.3f}%   (head excluded)")
    lines.append(f"  {'with head':10s} {pelt_total + counts['head']:>12,}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minipelt.summary", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a BERT config.json")
    parser.add_argument("--method", default="unipelt")
    parser.add_argument("--num-labels", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        with torch.device("meta"):
            model = SequenceClassifier(BertModel(BertConfig.from_json(args.config), PeltConfig.from_method(args.method)),
                                       args.num_labels)
    except (ValueError, OSError) as e:  # a missing or malformed config.json, an unknown method
        sys.exit(f"error: {e}")
    print(report(model))


if __name__ == "__main__":
    main()
