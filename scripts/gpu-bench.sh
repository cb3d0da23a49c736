#!/usr/bin/env bash
# Benchmarks newton-wgpu on this machine's GPU through Vulkan and writes everything to one
# folder: the adapter (info.txt), the tuner's table for cnn4 and its cache (tune.txt, cache/), the
# costs bench (results.json, costs.txt; cnn4, resnet8 and resnet20), the CG step across two
# ranks with its product summed in pieces over an emulated link (overlap.json, overlap.txt), every
# convolution kernel per layer (kernels.txt), one Newton-against-SGD comparison on the
# bundled digits (compare/) and summary.txt, the figures of all of them in one page.
#
#   scripts/gpu-bench.sh [--prebuilt DIR] [--quick] [OUT]    OUT: gpu-bench-<date>-<time>
#
# --prebuilt DIR runs the binaries and the digits of a bundle made by scripts/bundle.sh on
# another machine (no Rust, no network needed here); without it the script builds from this
# checkout (and fetches Rust with rustup if it can). --quick measures only the host's share
# of a CG step, one network's kernels and a short comparison. On one GPU the whole run takes
# a few minutes; on a software GPU --quick takes a few and the full run hours.
#
# Needs a GPU driver with Vulkan support (NVIDIA's driver ships its ICD). The Vulkan loader is
# unpacked from DIR/debs/ or .gl/ when it is missing, or installed with apt-get as root.
set -euo pipefail

prebuilt="" quick=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prebuilt) prebuilt="$(cd "$2" && pwd)"; shift 2 ;;
    --quick) quick=1; shift ;;
    *) break ;;
  esac
done
out="${1:-gpu-bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
say() { echo "gpu-bench: $*" >&2; }

# The Vulkan loader, and the glvnd libraries NVIDIA's Vulkan driver needs.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1' || ! ldconfig -p | grep -q 'libGLdispatch\.so\.0'; then
  debs=$(ls "${prebuilt:-.}"/debs/*.deb .gl/*.deb 2>/dev/null || true)
  if [[ -n "$debs" ]]; then
    say "unpacking the Vulkan loader"
    for f in $debs; do dpkg -x "$f" /; done
    ldconfig
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -q && apt-get install -y -q libvulkan1 libglvnd0 libglx0 libegl1
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

# The binaries and the data: the bundle's, or built here.
if [[ -n "$prebuilt" ]]; then
  program="$prebuilt/newton-wgpu" costs="$prebuilt/costs" kernels="$prebuilt/kernels"
  overlap="$prebuilt/overlap"
  # The bundle's font for compare's charts, unless one is named already.
  if [[ -z "${NEWTON_WGPU_FONT:-}" && -f "$prebuilt/DejaVuSans.ttf" ]]; then
    export NEWTON_WGPU_FONT="$prebuilt/DejaVuSans.ttf"
  fi
  data="$prebuilt/data/mnist-sample"
else
  cd "$(dirname "$0")/.."
  if ! command -v cargo >/dev/null; then
    if [[ ! -x "$HOME/.cargo/bin/cargo" ]]; then
      say "installing Rust with rustup"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  cargo build --release --bins
  bench() { cargo bench --bench "$1" --; }
  program="$PWD/target/release/newton-wgpu" costs="bench costs" kernels="bench kernels"
  overlap="bench overlap"
  data="$PWD/data/mnist-sample"
fi

# Each step's output goes to the terminal and to OUT/<name>.txt.
run() {
  local name=$1
  shift
  say "$name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
}

run info "$program" info
if grep -q "device type  Cpu" "$out/info.txt"; then
  if [[ -e /dev/nvidia0 || -e /proc/driver/nvidia/version ]]; then
    say "an NVIDIA GPU is here but Vulkan sees only a software adapter: the container needs"
    say "NVIDIA_DRIVER_CAPABILITIES to include graphics (the Vulkan driver is libGLX_nvidia.so.0,"
    say "named by an ICD file such as $nvidia_icd) and the glvnd libraries (libglvnd0, libglx0,"
    say "libegl1: the bundle's debs/); not measuring a software adapter in its place"
    exit 1
  fi
  say "warning: the adapter is a software GPU; these are not GPU figures"
fi
# The tuner first: it times every layer's kernels and keeps the winners (cache/ in OUT).
export NEWTON_WGPU_CACHE_DIR="$out/cache"
run tune "$program" tune --data "$data" --net cnn4 --loss ce
# shellcheck disable=SC2086 # $costs and $kernels may be a function and its argument
# The full run measures the Fixup ResNets too (ResNet-20 on CIFAR-10 reaches about 91.7% with
# SGD and batch norm in the common PyTorch reference, and Fixup reports the same range).
if [[ -n "$quick" ]]; then networks=(); else networks=(--networks cnn4,resnet8,resnet20); fi
run costs $costs --bench ${quick:+--quick --one-case} ${networks[@]+"${networks[@]}"} --json "$out/results.json"
run overlap $overlap --bench ${quick:+--quick} --json "$out/overlap.json"
if [[ -n "$quick" ]]; then
  run kernels env BENCH_ONLY=cnn4-small $kernels --bench --runs 3
  budget=(--limit 1000 --iters 2 --epochs 2)
else
  run kernels $kernels --bench --runs 5
  budget=(--iters 10 --epochs 10)
fi
run compare "$program" compare --data "$data" --net cnn4-small --loss ce --lambda 0.1 --momentum 0.9 \
  "${budget[@]}" --out "$out/compare"

{
  echo "newton-wgpu GPU benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  sed -n '1,5p' "$out/info.txt"
  echo
  grep -A100 '^shape' "$out/tune.txt" || true
  echo
  grep -v '^\s*$' "$out/costs.txt" | grep -v '^wrote '
  echo
  grep -A5 'link time' "$out/overlap.txt" || true
  echo
  cat "$out/kernels.txt"
  echo
  cat "$out/compare/summary.txt"
} >"$out/summary.txt"
say "results in $out (summary.txt, results.json)"
