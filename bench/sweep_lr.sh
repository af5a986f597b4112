#!/usr/bin/env bash
# The dev-split sweep behind the per-method defaults in minipelt/trainer.py (METHOD_DEFAULTS):
# STS-B, K = 100, MiniLM (mean pooling), seed 1, 30 epochs (20 for the first lora/finetune pair),
# dev = 300 examples evaluated every 14 steps (2 epochs). Selection by DEV Spearman only.
# Each line: METHOD LR. Results: runs/sweep/<method>-lr<lr>/seed1/results.json; table in the README.
set -eu
glue=${1:-../shared/data/glue}
while read -r method lr; do
  python train.py --task stsb --k 100 --method "$method" --lr "$lr" --epochs 30 --eval-every 14 --dev-size 300 \
    --seeds 1 --model minilm --data-dir "$glue" --output-dir "runs/sweep/$method-lr$lr"
done <<'RUNS'
lora 1e-3
lora 2e-3
finetune 5e-5
finetune 1e-4
bitfit 1e-3
bitfit 5e-3
adapter 1e-3
prefix 1e-3
prefix 5e-3
unipelt-ap 1e-3
unipelt 1e-3
unipelt 3e-3
RUNS
