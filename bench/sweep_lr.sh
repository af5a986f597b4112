#!/usr/bin/env bash
# The dev-split sweep behind the per-method defaults (minipelt/trainer.py METHOD_DEFAULTS):
# STS-B, K = 100, MiniLM (mean pooling), seed 1, 30 epochs, dev = 300 examples evaluated every
# 14 steps (2 epochs). Selection by DEV Spearman only; the README's table lists dev and test.
# Each line: METHOD LR PREFIX_LR ('-': the prefix MLP uses LR) [EPOCHS]. Results land in
# runs/sweep/<method>-lr<lr>-plr<prefix_lr>/seed1/results.json.
# (The runs in the README were made through minipelt.trainer.train with these same options.)
set -eu
glue=${1:-../shared/data/glue}
while read -r method lr plr epochs; do
  extra=(--prefix-lr "$plr"); [ "$plr" = "-" ] && extra=(--prefix-lr "$lr")
  python train.py --task stsb --k 100 --method "$method" --lr "$lr" "${extra[@]}" --epochs "${epochs:-30}" \
    --eval-every 14 --dev-size 300 --seeds 1 --model minilm --data-dir "$glue" \
    --output-dir "runs/sweep/$method-lr$lr-plr$plr"
done <<'RUNS'
finetune 5e-5 - 20
lora 1e-3 - 20
adapter 1e-3 -
bitfit 5e-3 -
prefix 5e-3 -
prefix 3e-4 -
prefix 1e-4 -
prefix 1e-3 1e-4
unipelt 1e-3 -
unipelt 1e-3 1e-4
unipelt-ap 1e-3 -
unipelt-ap 1e-3 1e-4
RUNS
