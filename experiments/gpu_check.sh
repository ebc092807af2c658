#!/usr/bin/env bash
# The simulator's GPU checks (README: Simulator → Speed → Torch engine), for a machine with a CUDA
# GPU whose python3 holds torch, numba, scipy and pytest: the torch engine's tests, now also on the
# GPU (parity with the numba engine in distribution), and the time of one Fashion-MNIST epoch on the
# GPU: DF on sim/pcm, on sim/fixed8 (digital arrays) and on sim/reram_pulsed (pulsed devices), and FF on
# the robustness study's noisy chain
# (robustness_fmnist.toml: ideal preset, programming + stuck-at + read noise at 1 %, headroom 128).
# Run from the repository root:
#   DATA=/path/to/fashion-mnist OUT=/path/to/results bash experiments/gpu_check.sh
# DATA: a folder with the four *-ubyte.gz files (default: the Debian package's); OUT: results
# (default runs/gpu-check): tests.log, epoch/, epoch-fixed8/, epoch-reram/, epoch-ff-study/ (metrics.json each),
# summary.txt.
set -euo pipefail
OUT=${OUT:-runs/gpu-check}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider tests/test_torch_engine.py tests/test_torch_engine_models.py 2>&1 | tee "$OUT/tests.log"
epoch() {  # epoch NAME CONFIG --set ...: one epoch on the GPU into $OUT/NAME
  local name=$1 cfg=$2; shift 2
  python3 -m experiments.cli train "$cfg" --set hardware.backend=sim --set train.device=cuda \
    --set train.epochs=1 --set "data.root=\"$DATA\"" "$@" --no-progress --out "$OUT/$name"
}
epoch epoch experiments/configs/df_mlp_fmnist.toml --set hardware.preset=pcm
epoch epoch-fixed8 experiments/configs/df_mlp_fmnist.toml --set hardware.preset=fixed8
epoch epoch-reram experiments/configs/df_mlp_fmnist.toml --set hardware.preset=reram_pulsed
epoch epoch-ff-study experiments/configs/ff_mlp_fmnist.toml --set "model.hidden=[500, 500]" \
  --set hardware.preset=ideal --set 'hardware.noise=["gaussian_weight", "stuck_at", "gaussian_read"]' \
  --set hardware.weight_headroom=128 --set hardware.gaussian_weight.sigma_add_rel=0.01 \
  --set hardware.gaussian_weight.sigma_mul_rel=0 --set hardware.stuck_at.p_stuck_low=0.01 \
  --set hardware.stuck_at.p_stuck_high=0.01 --set hardware.gaussian_read.sigma_add_rel=0.01 \
  --set hardware.gaussian_read.sigma_mul_rel=0
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
for name, what in (("epoch", "DF sim/pcm"), ("epoch-fixed8", "DF sim/fixed8"), ("epoch-reram", "DF sim/reram_pulsed"),
                   ("epoch-ff-study", "FF sim/ideal + study noise 1 %")):
    m = json.load(open(f"{sys.argv[1]}/{name}/metrics.json"))
    print(f"{what} on cuda, 1 epoch: train {m['train_s']:.1f} s, wall {m['wall_s']:.1f} s, test accuracy {m['test_accuracy']:.4f}")
PY
