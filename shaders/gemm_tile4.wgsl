// The matrix product C = A·B in workgroup-memory tiles of vec4 values (the shape of
// tfjs-webgpu's matrix product): each workgroup of 8 × 8 invocations computes a 32 × 32 tile
// of C, each invocation a 4 × 4 block of it, and K goes in steps of 32. A part of matmul.wgsl
// and conv_tiled.wgsl, which supply the operands through the same functions as for
// gemm_direct.wgsl (gemm_shape, a4, b4, store).
//
// Per step the workgroup copies a 32 × 32 slice of A (rows along K) and of B (rows along N)
// into workgroup memory, four vec4 values per invocation and operand, waits, and every
// invocation does 4 × 4 × 32 multiply-adds from 64 vec4 loads of the tiles: 8 loads per 64
// multiply-adds, against 2 per 1 without the tiles.

const T4_TILE: u32 = 32u;
// vec4 values per row of a tile.
const T4_ROW: u32 = 8u;

var<workgroup> t4_a: array<vec4<f32>, 256>;
var<workgroup> t4_b: array<vec4<f32>, 256>;

fn gemm_tile4(wid: vec3<u32>, nwg: vec3<u32>, l: u32) {
    let shape = gemm_shape();
    let tiles_m = (shape.x + T4_TILE - 1u) / T4_TILE;
    let tiles_n = (shape.y + T4_TILE - 1u) / T4_TILE;
    // The whole workgroup leaves together (t is uniform), before any barrier.
    let t = wid.y * nwg.x + wid.x;
    if (t >= tiles_m * tiles_n) { return; }
    let m0 = (t / tiles_n) * T4_TILE;
    let n0 = (t % tiles_n) * T4_TILE;
    // This invocation's rows ty * 4 .. ty * 4 + 3 and columns tx * 4 .. tx * 4 + 3 of the tile.
    let ty = l / T4_ROW;
    let tx = l % T4_ROW;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < shape.z; k0 += T4_TILE) {
        for (var r = 0u; r < 4u; r++) {
            let e = r * 64u + l;
            let row = e / T4_ROW;
            let c4 = (e % T4_ROW) * 4u;
            t4_a[e] = a4(m0 + row, k0 + c4);
            t4_b[e] = b4(k0 + row, n0 + c4);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < T4_ROW; kk++) {
            let k = kk * 4u;
            let b = mat4x4<f32>(t4_b[k * T4_ROW + tx], t4_b[(k + 1u) * T4_ROW + tx],
                                t4_b[(k + 2u) * T4_ROW + tx], t4_b[(k + 3u) * T4_ROW + tx]);
            let a_row = ty * 4u * T4_ROW + kk;
            acc0 += b * t4_a[a_row];
            acc1 += b * t4_a[a_row + T4_ROW];
            acc2 += b * t4_a[a_row + 2u * T4_ROW];
            acc3 += b * t4_a[a_row + 3u * T4_ROW];
        }
        workgroupBarrier();
    }
    let m = m0 + ty * 4u;
    let n = n0 + tx * 4u;
    store4(m, n, acc0);
    store4(m + 1u, n, acc1);
    store4(m + 2u, n, acc2);
    store4(m + 3u, n, acc3);
}
