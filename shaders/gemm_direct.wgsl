// The matrix product C = A·B with each invocation computing BLOCK_ROWS × 4 values of C in named vec4
// registers: no workgroup memory and no barrier, the kernel shape for adapters where either
// is slow (software GPUs), and a candidate everywhere else. A part of matmul.wgsl and
// conv_tiled.wgsl, which supply the operands four values at a time:
//   gemm_shape() -> vec3<u32>     (M, N, K)
//   a4(m, k) -> vec4<f32>         A[m, k .. k+3], 0 outside A
//   b4(k, col) -> vec4<f32>       B[k, col .. col+3], 0 outside B
//   store(m, col, value)          what becomes of one result (gemm_vec4.wgsl's store4 writes
//                                 four with it)
//
// K goes in steps of 4: each step loads BLOCK_ROWS + 4 vec4 values (four rows of B as one 4×4 block,
// a vec4 of A per row) for 16·BLOCK_ROWS multiply-adds. Neighbouring invocations take neighbouring
// columns, so they share A's values and read B's consecutively. BLOCK_ROWS is a pipeline constant:
// the accumulators a smaller BLOCK_ROWS leaves unused are dead code, not a dynamically indexed array.

// Rows of C per invocation: 1, 2, 4 or 8 (set by the host).
override BLOCK_ROWS: u32 = 4u;

fn gemm_direct(t: u32) {
    let shape = gemm_shape();
    let col_blocks = (shape.y + 3u) / 4u;
    let row_blocks = (shape.x + BLOCK_ROWS - 1u) / BLOCK_ROWS;
    if (t >= col_blocks * row_blocks) { return; }
    let n0 = (t % col_blocks) * 4u;
    let m0 = (t / col_blocks) * BLOCK_ROWS;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var acc4 = vec4<f32>();
    var acc5 = vec4<f32>();
    var acc6 = vec4<f32>();
    var acc7 = vec4<f32>();
    for (var k = 0u; k < shape.z; k += 4u) {
        // Column j of b is row k + j of B: b * a sums B[k + j, cols] · A[m, k + j] over j.
        let b = mat4x4<f32>(b4(k, n0), b4(k + 1u, n0), b4(k + 2u, n0), b4(k + 3u, n0));
        acc0 += b * a4(m0, k);
        if (BLOCK_ROWS > 1u) { acc1 += b * a4(m0 + 1u, k); }
        if (BLOCK_ROWS > 2u) {
            acc2 += b * a4(m0 + 2u, k);
            acc3 += b * a4(m0 + 3u, k);
        }
        if (BLOCK_ROWS > 4u) {
            acc4 += b * a4(m0 + 4u, k);
            acc5 += b * a4(m0 + 5u, k);
            acc6 += b * a4(m0 + 6u, k);
            acc7 += b * a4(m0 + 7u, k);
        }
    }
    store4(m0, n0, acc0);
    if (BLOCK_ROWS > 1u) { store4(m0 + 1u, n0, acc1); }
    if (BLOCK_ROWS > 2u) {
        store4(m0 + 2u, n0, acc2);
        store4(m0 + 3u, n0, acc3);
    }
    if (BLOCK_ROWS > 4u) {
        store4(m0 + 4u, n0, acc4);
        store4(m0 + 5u, n0, acc5);
        store4(m0 + 6u, n0, acc6);
        store4(m0 + 7u, n0, acc7);
    }
}
