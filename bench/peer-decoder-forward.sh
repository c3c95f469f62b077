#!/usr/bin/env bash
# PyTorch decoder forward with the peers' settings (2 threads, jemalloc, OpenBLAS-OpenMP); run ../shared/peers/run.sh
# once first (it installs python3-torch etc.).   bash bench/peer-decoder-forward.sh [batch...]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=${PEERS:-$HERE/../../shared/peers}
[ -d "$PEERS/pytorch" ] || PEERS=/work/shared/peers
export SAM_SRC="$PEERS/third_party/sam" BENCH_THREADS=2 OMP_NUM_THREADS=2 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
for b in "${@:-1}"; do
  env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
    /usr/bin/python3 "$HERE/peer_decoder_forward.py" --peers "$PEERS/pytorch" --batch "$b" | grep '^RESULT'
done
