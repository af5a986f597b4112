#!/usr/bin/env bash
# The dev-split sweep behind the per-method defaults (METHODS in minipelt/model/methods.py), and the
# fp32-vs-bf16 check: MiniLM (mean pooling), K = 100, 30 epochs, dev = 1000 examples evaluated
# every 28 steps (4 epochs) and at the last step. Tuning uses the dev splits of STS-B and CoLA only.
#
#   bench/grid/sweep.sh 0/2 & bench/grid/sweep.sh 1/2 &     # two single-threaded shards side by side
#
# Lines are in the order they were run: one setting per method first, then the fp32-vs-bf16 check
# (STS-B, UniPELT and LoRA, seeds 1-3), then the second learning rates, then two lower ones for
# prefix-tuning after the defaults check (prefix alone collapsed on STS-B).
# Each line of RUNS: TASK METHOD LR PREFIX_LR ('-': the prefix MLP uses LR) PRECISION SEED.
# A shard i/n runs lines i, i+n, ...; finished runs are skipped, so re-running resumes. Results land in
# runs/sweep/<task>/<method>-lr<lr>-plr<plr>-<precision>/seed<seed>/results.json; a run recorded in
# bench/results/sweep (`python bench/grid/sweep_table.py --record runs/sweep`, committed) is never rerun.
set -u
shard=${1:-0/1}; i=${shard%/*}; n=${shard#*/}
glue=${GLUE:-../shared/data/glue}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
line=0; failed=0
while read -r task method lr plr precision seed; do
  [ -z "$task" ] && continue
  setting="$method-lr$lr-plr$plr-$precision"
  if [ $((line % n)) -eq "$i" ] && [ ! -e "bench/results/sweep/$task/$setting/seed$seed.json" ]; then
    prefix_lr=$plr; [ "$plr" = "-" ] && prefix_lr=$lr
    python train.py --task "$task" --k 100 --method "$method" --lr "$lr" --prefix-lr "$prefix_lr" --epochs 30 \
      --eval-every 28 --dev-size 1000 --seeds "$seed" --precision "$precision" --model minilm --data-dir "$glue" \
      --output-dir "runs/sweep/$task/$setting" || failed=1
  fi
  line=$((line + 1))
done <<'RUNS'
stsb unipelt 1e-3 1e-4 fp32 3
stsb prefix 1e-3 - bf16 1
stsb unipelt-ap 1e-3 - bf16 1
cola unipelt-ap 1e-3 - bf16 1
stsb adapter 1e-3 - bf16 1
cola adapter 1e-3 - bf16 1
stsb bitfit 5e-3 - bf16 1
cola bitfit 5e-3 - bf16 1
stsb finetune 5e-5 - bf16 1
cola finetune 5e-5 - bf16 1
stsb unipelt 1e-3 - bf16 1
cola prefix 1e-3 - bf16 1
stsb unipelt 1e-3 1e-4 bf16 1
stsb lora 1e-3 - bf16 1
stsb unipelt 1e-3 1e-4 fp32 1
stsb lora 1e-3 - fp32 1
stsb unipelt 1e-3 1e-4 bf16 2
stsb lora 1e-3 - bf16 2
stsb unipelt 1e-3 1e-4 fp32 2
stsb lora 1e-3 - fp32 2
stsb unipelt 1e-3 1e-4 bf16 3
stsb lora 1e-3 - bf16 3
stsb lora 1e-3 - fp32 3
cola unipelt 1e-3 1e-4 bf16 1
cola unipelt 1e-3 - bf16 1
cola lora 1e-3 - bf16 1
stsb prefix 1e-3 1e-4 bf16 1
cola prefix 1e-3 1e-4 bf16 1
stsb unipelt-ap 1e-3 1e-4 bf16 1
cola unipelt-ap 1e-3 1e-4 bf16 1
stsb adapter 3e-3 - bf16 1
cola adapter 3e-3 - bf16 1
stsb lora 5e-4 - bf16 1
cola lora 5e-4 - bf16 1
stsb bitfit 1e-3 - bf16 1
cola bitfit 1e-3 - bf16 1
stsb finetune 1e-4 - bf16 1
cola finetune 1e-4 - bf16 1
stsb prefix 5e-3 - bf16 1
cola prefix 5e-3 - bf16 1
stsb prefix 3e-4 - bf16 1
stsb prefix 1e-4 - bf16 1
cola prefix 3e-4 - bf16 1
cola prefix 1e-4 - bf16 1
RUNS
exit $failed
