#!/usr/bin/env bash
# The simulator's GPU checks (README: Simulator → Speed → Torch engine), for a machine with a CUDA
# GPU whose python3 holds torch, numba, scipy and pytest: the torch engine's tests, now also on the
# GPU (parity with the numba engine in distribution), and the time of one Fashion-MNIST epoch of DF
# on sim/pcm on the GPU.  Run from the repository root:
#   DATA=/path/to/fashion-mnist OUT=/path/to/results bash experiments/gpu_check.sh
# DATA: a folder with the four *-ubyte.gz files (default: the Debian package's); OUT: results
# (default runs/gpu-check): tests.log, epoch/metrics.json, summary.txt.
set -euo pipefail
OUT=${OUT:-runs/gpu-check}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider tests/test_torch_engine.py 2>&1 | tee "$OUT/tests.log"
python3 -m experiments.cli train experiments/configs/df_mlp_fmnist.toml --set hardware.backend=sim \
  --set hardware.preset=pcm --set train.device=cuda --set train.epochs=1 --set "data.root=\"$DATA\"" \
  --no-progress --out "$OUT/epoch"
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
m = json.load(open(f"{sys.argv[1]}/epoch/metrics.json"))
print(f"DF sim/pcm on cuda, 1 epoch: train {m['train_s']:.1f} s, wall {m['wall_s']:.1f} s, test accuracy {m['test_accuracy']:.4f}")
PY
