// The convolution as an implicit matrix product by any of the product kernels: the tiles of
// gemm_tile.wgsl (conv), the register blocks of gemm_direct.wgsl (direct) or the vec4 tiles of
// gemm_tile4.wgsl (tile4; both entry points in gemm_vec4.wgsl). Nothing is unfolded in memory; conv_params.wgsl has
// the layouts:
//   A = the filters [out_c, in_c·k_h·k_w] at w_off in theta, or with P.flipped the flipped,
//       transposed filters of the backward pass to the input,
//       W'[c, o, i, j] = W[o, c, k_h − 1 − i, k_w − 1 − j] (P then describes that pass: its
//       out_c is the layer's in_c),
//   B = the unfolded input: row (c, i, j), column (n, p, q) holds
//       x[n, c, p·stride + i − pad_h, q·stride + j − pad_w] (0 in the padding),
//   C = y: row o, column (n, p, q) is y[n, o, p, q], plus the bias (from theta at b_off) with
//       P.has_bias, plus what y holds with P.accumulate.

@group(0) @binding(1) var<storage, read> tiled_theta: array<f32>;
@group(0) @binding(2) var<storage, read> tiled_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> tiled_y: array<f32>;

fn gemm_shape() -> vec3<u32> {
    return vec3<u32>(P.out_c, P.batch * P.out_h * P.out_w, P.in_c * P.k_h * P.k_w);
}

fn a_at(m: u32, k: u32) -> f32 {
    let shape = gemm_shape();
    if (m >= shape.x || k >= shape.z) { return 0.0; }
    if (P.flipped == 0u) { return tiled_theta[P.w_off + m * shape.z + k]; }
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let o = k / (P.k_w * P.k_h);
    return tiled_theta[P.w_off + ((o * P.out_c + m) * P.k_h + (P.k_h - 1u - i)) * P.k_w + (P.k_w - 1u - j)];
}

fn b_at(k: u32, col: u32) -> f32 {
    let shape = gemm_shape();
    if (k >= shape.z || col >= shape.y) { return 0.0; }
    let q = col % P.out_w;
    let p = (col / P.out_w) % P.out_h;
    let n = col / (P.out_w * P.out_h);
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let c = k / (P.k_w * P.k_h);
    let at = padded((n * P.in_c + c) * P.in_h * P.in_w, i32(p * P.stride + i) - P.pad_h,
                    i32(q * P.stride + j) - P.pad_w);
    if (!at.inside) { return 0.0; }
    return tiled_x[at.index];
}

fn store(m: u32, col: u32, value: f32) {
    let plane = P.out_h * P.out_w;
    let at = ((col / plane) * P.out_c + m) * plane + col % plane;
    var bias = 0.0;
    if (P.has_bias != 0u) { bias = tiled_theta[P.b_off + m]; }
    let before = select(0.0, tiled_y[at], P.accumulate != 0u);
    tiled_y[at] = value + bias + before;
}

// The four-value forms gemm_direct.wgsl and gemm_tile4.wgsl read: the filters and the unfolded
// input are gathered value by value (neither is contiguous in general).
fn a4(m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(a_at(m, k), a_at(m, k + 1u), a_at(m, k + 2u), a_at(m, k + 3u));
}

fn b4(k: u32, col: u32) -> vec4<f32> {
    return vec4<f32>(b_at(k, col), b_at(k, col + 1u), b_at(k, col + 2u), b_at(k, col + 3u));
}

@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    gemm_tile(wid, nwg, l);
}
