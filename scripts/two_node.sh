#!/bin/bash
# EXAMPLE: one fold trained data-parallel on two machines without a scheduler. CI runs the same
# launch (the elastic form below) as two "nodes" on 127.0.0.1: tests/training/test_multinode.py.
#
# Run the same command on both machines, with NODE_RANK 0 on the first one (HEAD), 1 on the other:
#
#   HEAD=10.0.0.1 NODE_RANK=0 GPUS=4 scripts/two_node.sh Dataset004_Hippocampus 3d_fullres 0
#   HEAD=10.0.0.1 NODE_RANK=1 GPUS=4 scripts/two_node.sh Dataset004_Hippocampus 3d_fullres 0
#
# torchrun's static rendezvous puts global rank 0 on node 0 (HEAD): that node writes the log, the
# checkpoints and the final validation. Both machines need autoseg installed the same way and the
# preprocessed data at the same path; the results folder only needs to exist on HEAD, but a shared
# one lets either machine resume. HEAD:PORT must be reachable from the other machine, and the
# GPUs of both must reach each other (NCCL; set NCCL_SOCKET_IFNAME if it picks a wrong interface).
#
# Each rank uses cuda:LOCAL_RANK (its index on its own machine), never the global rank.
#
# Elastic alternative (ranks assigned by arrival, same command everywhere, no NODE_RANK); with
# --max-restarts, workers that fail are restarted and the job resumes from checkpoint_latest.pt
# (use a new --rdzv-id per job: a restart resumes only a checkpoint of the same id, and the machine
# that gets rank 0 must see it, so share the results folder):
#   torchrun --nnodes 2 --nproc-per-node "$GPUS" --rdzv-backend c10d --rdzv-endpoint "$HEAD:$PORT" \
#       --rdzv-id "my-run-$(date +%s)" --max-restarts 3 -m autoseg train "$@" --device cuda

set -euo pipefail

: "${HEAD:?set HEAD to the address of node 0}"
: "${NODE_RANK:?set NODE_RANK to 0 on HEAD and 1 on the other node}"
GPUS=${GPUS:-$(nvidia-smi --list-gpus | wc -l)}
PORT=${PORT:-29500}

if [ "$#" -lt 3 ]; then
    echo "usage: HEAD=addr NODE_RANK=0|1 $0 DATASET CONFIGURATION FOLD [autoseg train options...]" >&2
    exit 2
fi

exec torchrun \
    --nnodes 2 \
    --node-rank "$NODE_RANK" \
    --nproc-per-node "$GPUS" \
    --master-addr "$HEAD" \
    --master-port "$PORT" \
    -m autoseg train "$@" --device cuda
