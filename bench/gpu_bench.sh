#!/usr/bin/env bash
# Install what bench/gpu_bench.py needs from bench/_wheels (no network, torch untouched), then run it.
#
#   bench/gpu_bench.sh [gpu_bench.py options]        e.g. bench/gpu_bench.sh --keep "$OUT"
#
# bench/_wheels comes from bench/gpu_wheels.sh, run on a machine with the package index. Requirements the
# Python already meets stay as they are; torch is held at its installed version. When the whole set does not
# install, each requirement is tried alone, and what still fails is named (its section then says why).
# numba-cuda comes without its cu13 extra (CUDA libraries too large to carry) unless the folder holds them: it
# then finds NVRTC, the runtime and nvJitLink in torch's CUDA build and NVVM in the machine's CUDA toolkit.
# PYTHON picks the interpreter (default python3, the one holding torch).
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=bench/_wheels
requirements=(hydra-core omegaconf soundfile matplotlib pyyaml numba-cuda torchcomp)

if [ -d "$wheels" ]; then
    tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    if ! ls "$wheels" | grep -q -- "-$tag-"; then
        echo "gpu_bench.sh: $wheels has no binary wheels for $tag (bench/gpu_wheels.sh --python \"${tag#cp}\")"
    fi
    if ls "$wheels" | grep -q '^nvidia_nvvm-'; then  # bench/gpu_wheels.sh --cuda-libs
        requirements[5]="numba-cuda[cu13]"
    fi
    pin=$(mktemp)
    "$python" -c 'import torch; print("torch==" + torch.__version__)' >"$pin"
    install() {
        "$python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels" \
            --constraint "$pin" "$@"
    }
    clock=$SECONDS
    if ! install "${requirements[@]}"; then
        echo "gpu_bench.sh: the whole set did not install from $wheels; one requirement at a time"
        for requirement in "${requirements[@]}"; do
            install "$requirement" && continue
            echo "gpu_bench.sh: could not install $requirement from $wheels"
        done
    fi
    rm -f "$pin"
    echo "gpu_bench.sh: installs took $((SECONDS - clock)) s"
else
    echo "gpu_bench.sh: no $wheels (run bench/gpu_wheels.sh where the package index is reachable); going on" \
        "with what $python has"
fi
exec "$python" bench/gpu_bench.py "$@"
