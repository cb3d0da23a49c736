#!/usr/bin/env bash
# Builds what a GPU machine without Rust or network needs to benchmark newton-wgpu, into one
# folder: the program and the two benchmarks (release, stripped, built with the build
# machine's paths remapped so that none is left in them), the bundled digits, this folder's
# gpu-bench.sh, and the Vulkan loader packages when apt-get can fetch them here.
#
#   scripts/bundle.sh [OUT]       OUT defaults to bundle/ (about 36 MiB)
#
# Then, on the GPU machine:  OUT/gpu-bench.sh --prebuilt OUT [--quick] [RESULTS]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${1:-bundle}"
mkdir -p "$out/data"
out="$(cd "$out" && pwd)"
say() { echo "bundle: $*" >&2; }

# A target folder of its own: the remapped flags would otherwise rebuild the usual one.
export CARGO_TARGET_DIR="$root/target/bundle"
export RUSTFLAGS="--remap-path-prefix=$root=newton-wgpu --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=cargo"
say "building (release, paths remapped)"
cargo build --release --bins
artifacts=$(cargo bench --no-run --message-format=json)
cp "$CARGO_TARGET_DIR/release/newton-wgpu" "$out/newton-wgpu"
for bench in costs kernels overlap; do
  exe=$(grep -o "\"executable\":\"[^\"]*/deps/$bench-[0-9a-f]*\"" <<<"$artifacts" | head -1 | cut -d'"' -f4)
  [[ -n "$exe" ]] && cp "$exe" "$out/$bench"
done
for bin in newton-wgpu costs kernels overlap; do
  [[ -x "$out/$bin" ]] || { say "missing $bin"; exit 1; }
  strip "$out/$bin"
  if grep -q -F "$root" "$out/$bin"; then
    say "$bin still holds the build path $root"
    exit 1
  fi
done
rm -rf "$out/data/mnist-sample"
cp -r data/mnist-sample "$out/data/"
cp scripts/gpu-bench.sh "$out/"
# A font for compare's charts (GPU machines often have none): DejaVu's, where this machine has it.
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [[ -f "$font" ]]; then
  cp "$font" "$out/"
else
  say "no $font here (Debian: fonts-dejavu-core): the charts need a font on the GPU machine"
fi

# The Vulkan loader, for a machine that has only the GPU driver, and the GL dispatch libraries
# (glvnd) that NVIDIA's Vulkan driver (libGLX_nvidia) needs: without them the loader says
# "Could not get vkCreateInstance" (seen on an H200 container).
mkdir -p "$out/debs"
if command -v apt-get >/dev/null; then
  lists=$(mktemp -d)
  opts=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Dir::State::Lists="$lists")
  mkdir -p "$lists/partial"
  if apt-get "${opts[@]}" update -qq >/dev/null 2>&1 &&
    (cd "$out/debs" && apt-get "${opts[@]}" download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 >/dev/null 2>&1); then
    say "Vulkan loader packages: $(ls "$out/debs")"
  else
    say "could not fetch libvulkan1 here; the GPU machine must have a Vulkan loader"
  fi
fi
say "$(du -sh "$out" | cut -f1) in $out"
