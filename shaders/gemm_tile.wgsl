// The matrix product C = A·B in workgroup-memory tiles, the kernel shape that suits adapters
// with fast shared memory (real GPUs). A part of matmul.wgsl and conv_tiled.wgsl, which
// supply the operands:
//   gemm_shape() -> vec3<u32>   (M, N, K)
//   a_at(m, k), b_at(k, col)    the values of A and B (0 outside them)
//   store(m, col, value)        what becomes of each result
//
// Each workgroup of 64 invocations computes a (PER·ROWS) × TILE tile of C, each invocation a
// ROWS × PER block of it, strided by PER so that neighbouring invocations read neighbouring
// values of the tiles (broadcasts, no bank conflicts). K goes in steps of STEP: the workgroup
// copies a (PER·ROWS) × STEP slice of A and a STEP × TILE slice of B into workgroup memory
// (consecutive invocations at consecutive addresses), waits, and every invocation does
// ROWS × PER × STEP multiply-adds from there: at ROWS = 8, 16 values loaded from memory per
// 64 multiply-adds, against 2 per 1 without the tiles. The host lowers ROWS for matrices of
// few rows (the layers with few channels) so that tiles are not mostly padding. TILE, STEP
// and PER are generated from src/kernels/gemm.rs; WG = PER · PER.

// Results per invocation along the rows of C: 1, 2, 4 or 8 (set by the host).
override ROWS: u32 = 8u;

// Rows of tile_a are padded by one value so that consecutive invocations, which copy
// consecutive k of one row of A, write to different banks.
const A_ROW: u32 = TILE + 1u;

fn tile_rows() -> u32 { return PER * ROWS; }

var<workgroup> tile_a: array<f32, STEP * A_ROW>;
var<workgroup> tile_b: array<f32, STEP * TILE>;

fn gemm_tile(wid: vec3<u32>, nwg: vec3<u32>, l: u32) {
    let shape = gemm_shape();
    let tiles_m = (shape.x + tile_rows() - 1u) / tile_rows();
    let tiles_n = (shape.y + TILE - 1u) / TILE;
    // The whole workgroup leaves together (t is uniform), before any barrier.
    let t = wid.y * nwg.x + wid.x;
    if (t >= tiles_m * tiles_n) { return; }
    let m0 = (t % tiles_m) * tile_rows();
    let n0 = (t / tiles_m) * TILE;
    let row = l / PER;
    let col = l % PER;

    // Sized for ROWS = 8; the driver drops what a smaller ROWS leaves unused.
    var acc: array<f32, PER * PER>;
    for (var k0 = 0u; k0 < shape.z; k0 += STEP) {
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
        if (m >= shape.x) { break; }
        for (var u = 0u; u < PER; u++) {
            let n = n0 + col + u * PER;
            if (n >= shape.y) { break; }
            store(m, n, acc[s * PER + u]);
        }
    }
}
