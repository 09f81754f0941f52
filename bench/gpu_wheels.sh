#!/usr/bin/env bash
# Download, on a machine with the package index, the wheels that bench/gpu_bench.sh installs on a GPU machine
# without network (linux x86_64) into the git-ignored bench/_wheels/, and print their total size.
#
#   bench/gpu_wheels.sh                      # binary wheels of the large packages for CPython 3.12 only
#   bench/gpu_wheels.sh --python "311 312"   # ... for these CPython versions (each adds about 28 MiB)
#   bench/gpu_wheels.sh --cuda-libs          # also the CUDA 13 libraries of numba-cuda[cu13] (about 180 MiB)
#
# What is there: the project's dependencies beyond torch, lightning, tensorboard and numba (which the GPU
# machine's Python has), numba-cuda for the CUDA kernels, and torchcomp for the processors' comparison.
# Versions are pinned to a set that installs and runs together (the one the CPU machine's venv uses).
#   pure Python, once:                hydra-core, omegaconf, antlr4 (built here from its sdist, the only form
#                                     it is published in), soundfile (bundles libsndfile), pycparser,
#                                     fonttools (its pure wheel), cycler, pyparsing, python-dateutil, tzdata,
#                                     cuda-pathfinder, cuda-toolkit (metadata only), torchcomp, torchlpc 0.6
#   small binaries, CPython 3.10-3.13: cffi, pyyaml
#   large binaries, --python only:     matplotlib, contourpy, kiwisolver, numba-cuda, cuda-bindings, cuda-core
# torchlpc (torchcomp's recursion) is taken at 0.6, its last pure-Python wheel: 0.7.x is an sdist with a C++/CUDA
# extension compiled against one torch build, so a wheel built here would not load on the GPU machine's torch;
# 0.7.x without that extension runs the same numba kernels as 0.6.
# The CUDA 13 libraries of the cu13 extra (nvidia-nvvm alone is 72 MiB) exceed what the device tool carries
# (64 MiB with the working tree); a CUDA build of torch brings nvrtc, the runtime and nvJitLink, and the CUDA
# toolkit of the GPU machine brings NVVM, so they are left out unless --cuda-libs asks for them.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=bench/_wheels
python=${PYTHON:-python3}
large_pythons="312"
cuda_libs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) large_pythons="$2"; shift 2 ;;
        --cuda-libs) cuda_libs=1; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "bench/gpu_wheels.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for version in $large_pythons; do
    case "$version" in
        310|311|312|313) ;;
        *) echo "bench/gpu_wheels.sh: --python takes CPython versions among 310 311 312 313, got '$version'" >&2
           exit 2 ;;
    esac
done

pure=(
    hydra-core==1.3.8 omegaconf==2.3.1 pycparser==3.12 fonttools==4.69.1 cycler==0.12.1 pyparsing==3.3.3
    python-dateutil==4.0.0 tzdata==2026.6 cuda-pathfinder==1.9.1 cuda-toolkit==13.5.0 torchcomp==0.2.1
    torchlpc==0.6
)
small=(cffi==2.1.1 pyyaml==6.0.4)
large=(matplotlib==3.11.2 contourpy==1.3.3 kiwisolver==1.5.1 numba-cuda==0.30.4 cuda-bindings==13.5.0
    cuda-core==1.2.2)
python_agnostic=(soundfile==0.14.0)
cuda=(nvidia-cuda-cccl==13.3.5.0.6 nvidia-cuda-nvrtc==13.5.37 nvidia-cuda-runtime==13.5.37
    nvidia-nvjitlink==13.5.37 nvidia-nvvm==13.5.37)
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_12 \
    manylinux2010 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done

download() {  # download <python version> <implementation> <abi> <requirement>...
    local version=$1 implementation=$2 abi=$3
    shift 3
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        --python-version "$version" --implementation "$implementation" --abi "$abi" "${platforms[@]}" \
        --platform any -d "$dest" "$@"
}

mkdir -p "$dest"
rm -f "$dest"/*.whl  # exactly what this call asks for
echo "pure Python wheels"
download 3.12 py none "${pure[@]}" "${python_agnostic[@]}"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$dest" antlr4-python3-runtime==4.9.3
for version in 310 311 312 313; do
    echo "binary wheels for CPython ${version:0:1}.${version:1}"
    download "$version" cp "cp$version" "${small[@]}"
    if [[ " $large_pythons " == *" $version "* ]]; then
        download "$version" cp "cp$version" "${large[@]}"
    fi
done
if [ "$cuda_libs" = 1 ]; then
    echo "CUDA 13 libraries"
    download 3.12 py none "${cuda[@]}"
fi

total=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "$(ls "$dest"/*.whl | wc -l) wheels in $dest: $((total / 1048576)) MiB"
if [ "$total" -gt $((60 * 1048576)) ]; then
    echo "more than 60 MiB: too large to carry with the working tree (64 MiB in all); drop a --python version" \
        "or --cuda-libs" >&2
fi
