// Matrix products in workgroup-memory tiles, the kernel shape that suits adapters with fast
// shared memory (real GPUs):
//
//   C[M, N] = A[M, K] · B[K, N]  (+ bias[m] with has_bias)  (+ C with accumulate)
//
// Each workgroup of 64 invocations computes a (8·ROWS) × 64 tile of C, each invocation a
// ROWS × 8 block of it, strided by 8 so that neighbouring invocations read neighbouring values
// of the tiles (broadcasts, no bank conflicts). K goes in steps of 16: the workgroup copies an
// (8·ROWS) × 16 slice of A and a 16 × 64 slice of B into workgroup memory (consecutive
// invocations at consecutive addresses), waits, and every invocation does ROWS × 8 × 16
// multiply-adds from there: at ROWS = 8, 16 values loaded from memory per 64 multiply-adds,
// against 2 per 1 without the tiles. The host lowers ROWS for matrices of few rows (the
// layers with few channels) so that tiles are not mostly padding.
//
// With CONV the same kernel is a convolution as an implicit matrix product (nothing is
// unfolded in memory; see conv.wgsl for the layouts):
//   A = the filters [out_c, in_c·k_h·k_w] at a_off in the parameter vector, or with `flipped`
//       the flipped, transposed filters of the backward pass to the input,
//       W'[c, o, i, j] = W[o, c, k_h − 1 − i, k_w − 1 − j] (M is then the layer's in_c),
//   B = the unfolded input: row (c, i, j), column (n, p, q) holds
//       x[n, c, p·stride + i − pad_h, q·stride + j − pad_w] (0 in the padding),
//   C = y: row o, column (n, p, q) is y[n, o, p, q]; the bias is read from A's buffer.
// Without CONV, A, B and C are dense row-major matrices from offset 0.

struct Params {
    m: u32, n: u32, k: u32, accumulate: u32,
    a_off: u32, bias_off: u32, has_bias: u32, flipped: u32,
    in_c: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, k_h: u32, k_w: u32, stride: u32,
    pad_h: i32, pad_w: i32, _unused0: u32, _unused1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<f32>;

// Whether B is the unfolded input of a convolution (set by the host).
override CONV: bool = false;

// Results per invocation along the rows of C: 1, 2, 4 or 8 (set by the host).
override ROWS: u32 = 8u;

// The columns of a workgroup's tile of C; the steps of K; invocations along each side. The
// host dispatches 64 invocations per workgroup (WG = TILE = PER × PER).
const TILE: u32 = 64u;
const STEP: u32 = 16u;
const PER: u32 = 8u;
// Rows of tile_a are padded by one value so that consecutive invocations, which copy
// consecutive k of one row of A, write to different banks.
const A_ROW: u32 = TILE + 1u;

fn tile_rows() -> u32 { return PER * ROWS; }

var<workgroup> tile_a: array<f32, STEP * A_ROW>;
var<workgroup> tile_b: array<f32, STEP * TILE>;

fn a_at(m: u32, k: u32) -> f32 {
    if (m >= P.m || k >= P.k) { return 0.0; }
    if (!CONV) { return mat_a[m * P.k + k]; }
    if (P.flipped == 0u) { return mat_a[P.a_off + m * P.k + k]; }
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let o = k / (P.k_w * P.k_h);
    return mat_a[P.a_off + ((o * P.m + m) * P.k_h + (P.k_h - 1u - i)) * P.k_w + (P.k_w - 1u - j)];
}

fn b_at(k: u32, col: u32) -> f32 {
    if (k >= P.k || col >= P.n) { return 0.0; }
    if (!CONV) { return mat_b[k * P.n + col]; }
    let q = col % P.out_w;
    let p = (col / P.out_w) % P.out_h;
    let n = col / (P.out_w * P.out_h);
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let c = k / (P.k_w * P.k_h);
    let iy = i32(p * P.stride + i) - P.pad_h;
    let ix = i32(q * P.stride + j) - P.pad_w;
    if (iy < 0 || iy >= i32(P.in_h) || ix < 0 || ix >= i32(P.in_w)) { return 0.0; }
    return mat_b[((n * P.in_c + c) * P.in_h + u32(iy)) * P.in_w + u32(ix)];
}

fn c_index(m: u32, col: u32) -> u32 {
    if (!CONV) { return m * P.n + col; }
    let plane = P.out_h * P.out_w;
    return ((col / plane) * P.m + m) * plane + col % plane;
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) l: u32) {
    let tiles_m = (P.m + tile_rows() - 1u) / tile_rows();
    let tiles_n = (P.n + TILE - 1u) / TILE;
    // The whole workgroup leaves together (t is uniform), before any barrier.
    let t = wid.y * nwg.x + wid.x;
    if (t >= tiles_m * tiles_n) { return; }
    let m0 = (t % tiles_m) * tile_rows();
    let n0 = (t / tiles_m) * TILE;
    let row = l / PER;
    let col = l % PER;

    // Sized for ROWS = 8; the driver drops what a smaller ROWS leaves unused.
    var acc: array<f32, PER * PER>;
    for (var k0 = 0u; k0 < P.k; k0 += STEP) {
        for (var r = 0u; r < 2u * ROWS; r++) {
            let e = r * TILE + l;
            let ka = e % STEP;
            let ma = e / STEP;
            tile_a[ka * A_ROW + ma] = a_at(m0 + ma, k0 + ka);
        }
        for (var r = 0u; r < STEP; r++) {
            let e = r * TILE + l;
            let kb = e / TILE;
            let nb = e % TILE;
            tile_b[kb * TILE + nb] = b_at(k0 + kb, n0 + nb);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < STEP; kk++) {
            var av: array<f32, PER>;
            var bv: array<f32, PER>;
            for (var s = 0u; s < ROWS; s++) { av[s] = tile_a[kk * A_ROW + row + s * PER]; }
            for (var u = 0u; u < PER; u++) { bv[u] = tile_b[kk * TILE + col + u * PER]; }
            for (var s = 0u; s < ROWS; s++) {
                for (var u = 0u; u < PER; u++) { acc[s * PER + u] += av[s] * bv[u]; }
            }
        }
        workgroupBarrier();
    }

    for (var s = 0u; s < ROWS; s++) {
        let m = m0 + row + s * PER;
        if (m >= P.m) { break; }
        let bias = select(0.0, mat_a[P.bias_off + m], P.has_bias != 0u);
        for (var u = 0u; u < PER; u++) {
            let n = n0 + col + u * PER;
            if (n >= P.n) { break; }
            let at = c_index(m, n);
            let before = select(0.0, mat_c[at], P.accumulate != 0u);
            mat_c[at] = acc[s * PER + u] + bias + before;
        }
    }
}
