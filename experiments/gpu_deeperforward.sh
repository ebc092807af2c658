#!/usr/bin/env bash
# DeeperForward's published CNNs with the published recipe (README: DeeperForward as implemented
# here), for a machine with a CUDA GPU whose python3 holds torch, numba, scipy and tomli_w: each
# config of NETS trained for each seed of SEEDS on the GPU, then one line per run with its test
# accuracy, the evaluated layer range chosen on the validation split, and its wall time.  Run from
# the repository root:
#   DATA=/path/to/fashion-mnist OUT=/path/to/results NETS="tinycnn resnet17" SEEDS="0 1 2" \
#     bash experiments/gpu_deeperforward.sh
# DATA: a folder with the four *-ubyte.gz files (default: the Debian package's); OUT: results
# (default runs/gpu-deeperforward): NET-sSEED/metrics.json per run, summary.txt; NETS: among
# tinycnn, vgg14, resnet17 (default all three); SEEDS: train.seed values (default 0).
set -euo pipefail
OUT=${OUT:-runs/gpu-deeperforward}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
NETS=${NETS:-tinycnn vgg14 resnet17}
SEEDS=${SEEDS:-0}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.cuda.get_device_name(0))"
for net in $NETS; do
  for seed in $SEEDS; do
    python3 -m experiments.cli train "experiments/configs/deeperforward_${net}_fmnist.toml" --set train.device=cuda \
      --set "train.seed=$seed" --set "data.root=\"$DATA\"" --no-progress --out "$OUT/$net-s$seed"
  done
done
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.json")):
    m = json.load(open(f))
    last = m["history"][-1]
    print(f"{f.parent.name}: test {m['test_accuracy']:.4f}, validation {m.get('val_accuracy') or float('nan'):.4f}, "
          f"layers {last.get('eval_layers')}, {m['epochs']} epochs, wall {m['wall_s']:.0f} s")
PY
