#!/usr/bin/env bash
# Benchmarks newton-wgpu on this machine's GPU through Vulkan and writes everything to one
# folder: the adapter (info.txt), the costs bench (results.json, costs.txt), both kinds of
# convolution kernels per layer (kernels.txt) and one Newton-against-SGD comparison on the
# bundled digits (compare/, the same command as README's table).
#
#   scripts/gpu-bench.sh [--quick] [OUT]        OUT defaults to gpu-bench-<date>-<time>
#
# --quick measures one case with fewer runs, one network's kernels and a short comparison
# (a first look, or a software GPU: there it takes about 7 minutes, the full run hours).
#
# Needs a GPU driver with Vulkan support (NVIDIA's driver ships its ICD). Brings what else it
# needs where it can: the Vulkan loader (unpacked from .gl/*.deb when that folder exists, else
# apt-get install libvulkan1 when run as root) and Rust (rustup, when cargo is missing and the
# network can be reached).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
if [[ "${1:-}" == "--quick" ]]; then
  quick=1
  shift
fi
out="${1:-gpu-bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

say() { echo "gpu-bench: $*" >&2; }

# The Vulkan loader.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  if compgen -G ".gl/*.deb" >/dev/null; then
    say "unpacking the Vulkan loader from .gl/"
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -q && apt-get install -y -q libvulkan1
  else
    say "no Vulkan loader (libvulkan.so.1): install libvulkan1 (or your system's package)"
    exit 1
  fi
fi
# NVIDIA's ICD where container images put it, when the loader would not find it itself.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z "${VK_DRIVER_FILES:-}" && -f "$nvidia_icd" ]]; then
  export VK_DRIVER_FILES="$nvidia_icd"
fi
export WGPU_BACKEND=vulkan
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# Rust.
if ! command -v cargo >/dev/null; then
  if [[ ! -x "$HOME/.cargo/bin/cargo" ]]; then
    say "installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# Each step's output goes to the terminal and to OUT/<name>.txt.
run() {
  local name=$1
  shift
  say "$name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
}

cargo build --release --bins --benches
run info target/release/newton-wgpu info
if grep -q "device type  Cpu" "$out/info.txt"; then
  say "warning: the adapter is a software GPU; these are not GPU figures"
fi

run costs cargo bench --bench costs -- ${quick:+--quick --one-case}
cp "${CARGO_TARGET_DIR:-target}/bench/results.json" "$out/results.json"

if [[ -n "$quick" ]]; then
  run kernels env BENCH_ONLY=cnn4-small cargo bench --bench kernels
  budget=(--limit 1000 --iters 2 --epochs 2)
else
  run kernels cargo bench --bench kernels
  budget=(--iters 10 --epochs 10)
fi
run compare target/release/newton-wgpu compare --data data/mnist-sample --net cnn4-small --loss ce \
  --lambda 0.1 --momentum 0.9 "${budget[@]}" --out "$out/compare"

say "results in $out"
