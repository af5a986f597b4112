#!/usr/bin/env bash
# The MiniLM reproduction grid (docs/reproduction.md), in the order its questions need it:
#   1. the defaults check: every method on every local task, K = 100, seed 1 (35 runs)
#   2. seeds 2 and 3 of the same cells, for Table 1/2's means and stds (70 runs): STS-B and SST-2
#      first, the tasks where the methods learn something at K = 100 (the check shows MRPC, CoLA
#      and RTE at the trivial predictor for every method, fine-tuning included)
#   3. K = 500 on STS-B and SST-2, seeds 1 and 2 (28 runs)
# All with bf16 autocast and a dev evaluation every 28 steps (departures recorded in the tables).
#
#   bench/grid/reproduce.sh 0/2 & bench/grid/reproduce.sh 1/2 &     # two single-threaded shards side by side
#   python bench/grid/grid.py --aggregate                       # tables and plots from the records
#
# Every finished cell is recorded in bench/results/grid (RECORDS to change it) and never trained
# again, so re-running resumes, on this machine or another one with the records committed.
set -u
shard=${1:-0/1}
glue=${GLUE:-../shared/data/glue}
records=${RECORDS:-bench/results/grid}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
tasks="sst2 mrpc cola stsb rte"
grid() {
  python bench/grid/grid.py --model minilm --data-dir "$glue" --precision bf16 --eval-every 28 \
    --record-dir "$records" --shard "$shard" "$@"
}
failed=0
grid --tasks $tasks --ks 100 --seeds 1 || failed=1
grid --tasks stsb sst2 --ks 100 --seeds 2 3 || failed=1
grid --tasks rte cola mrpc --ks 100 --seeds 2 3 || failed=1
grid --tasks stsb sst2 --ks 500 --seeds 1 2 || failed=1
exit $failed
