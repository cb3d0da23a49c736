// 2-D convolution with bias, zero padding and stride, and its two backward passes.
//
// Layouts (row-major): x [batch, in_c, in_h, in_w]; y [batch, out_c, out_h, out_w];
// weights inside the flat parameter vector theta at w_off, [out_c, in_c, k_h, k_w]
// (PyTorch's layout), bias at b_off, [out_c]. A dense layer is the convolution whose kernel
// covers its whole input, so it runs through the same kernels.
//
//   y[n,o,p,q] = b[o] + sum_{c,i,j} W[o,c,i,j] * x[n, c, p*stride + i - pad, q*stride + j - pad]
//
// Each invocation computes a 4 x 4 block of results in registers (no workgroup memory, no
// barriers: on software GPUs barriers cost far more than the loads they save), so each
// pair of 4 loads feeds 16 multiply-adds.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, k_h: u32,
    k_w: u32, stride: u32, pad: u32, w_off: u32,
    b_off: u32, group_size: u32, groups: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

const B: u32 = 4u;

fn blocks(n: u32) -> u32 { return (n + B - 1u) / B; }

// x[n, c, iy, ix], or 0 in the zero padding.
fn padded(value: f32, iy: i32, ix: i32) -> f32 {
    return select(0.0, value, iy >= 0 && iy < i32(P.in_h) && ix >= 0 && ix < i32(P.in_w));
}

fn padded4(value: vec4<f32>, iy: i32, ix: i32) -> vec4<f32> {
    return select(vec4<f32>(0.0), value, iy >= 0 && iy < i32(P.in_h) && ix >= 0 && ix < i32(P.in_w));
}

fn clamp_x(ix: i32) -> u32 { return u32(clamp(ix, 0, i32(P.in_w) - 1)); }

// The tile of outputs an invocation of forward or jvp computes: output channels oc0..oc0+3
// and columns q0..q0+3 of row p of sample n (invocations run along a row first, so that
// neighbours share their weights).
struct Tile { n: u32, oc0: u32, p: u32, q0: u32, valid: bool }

fn output_tile(t: u32) -> Tile {
    let col_blocks = blocks(P.out_w);
    let oc_blocks = blocks(P.out_c);
    let q0 = (t % col_blocks) * B;
    let p = (t / col_blocks) % P.out_h;
    let oc0 = ((t / (col_blocks * P.out_h)) % oc_blocks) * B;
    let n = t / (col_blocks * P.out_h * oc_blocks);
    return Tile(n, oc0, p, q0, t < P.batch * oc_blocks * P.out_h * col_blocks);
}

// Where the filters of the tile's 4 output channels start in theta (or in a direction of the
// same layout); channels past out_c reuse the last filter and are not stored.
fn filter_rows(oc0: u32) -> vec4<u32> {
    let taps = P.in_c * P.k_h * P.k_w;
    let last = P.out_c - 1u;
    return P.w_off + vec4<u32>(min(oc0, last), min(oc0 + 1u, last), min(oc0 + 2u, last), min(oc0 + 3u, last)) * taps;
}

// ---- forward: one invocation per (sample, 4 output channels, output row, 4 output columns) --

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_theta: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = output_tile(flat_index(gid, nwg));
    if (!tile.valid) { return; }
    let n = tile.n;
    let oc0 = tile.oc0;
    let p = tile.p;
    let q0 = tile.q0;
    let rows = filter_rows(oc0);
    let r0 = rows.x;
    let r1 = rows.y;
    let r2 = rows.z;
    let r3 = rows.w;
    let s = i32(P.stride);
    let ix0 = i32(q0) * s - i32(P.pad);
    // acc_k holds the 4 channels at output column q0 + k.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < P.in_c; c++) {
        let plane = (n * P.in_c + c) * P.in_h * P.in_w;
        for (var i = 0u; i < P.k_h; i++) {
            let iy = i32(p) * s + i32(i) - i32(P.pad);
            if (iy < 0 || iy >= i32(P.in_h)) { continue; }
            let row = plane + u32(iy) * P.in_w;
            for (var j = 0u; j < P.k_w; j++) {
                let k = (c * P.k_h + i) * P.k_w + j;
                let w = vec4<f32>(fwd_theta[r0 + k], fwd_theta[r1 + k], fwd_theta[r2 + k], fwd_theta[r3 + k]);
                let ix = ix0 + i32(j);
                acc0 += w * padded(fwd_x[row + clamp_x(ix)], iy, ix);
                acc1 += w * padded(fwd_x[row + clamp_x(ix + s)], iy, ix + s);
                acc2 += w * padded(fwd_x[row + clamp_x(ix + 2 * s)], iy, ix + 2 * s);
                acc3 += w * padded(fwd_x[row + clamp_x(ix + 3 * s)], iy, ix + 3 * s);
            }
        }
    }
    let acc = mat4x4<f32>(acc0, acc1, acc2, acc3);
    for (var o = 0u; o < B; o++) {
        let oc = oc0 + o;
        if (oc >= P.out_c) { break; }
        let bias = fwd_theta[P.b_off + oc];
        let out_row = ((n * P.out_c + oc) * P.out_h + p) * P.out_w;
        for (var k = 0u; k < B; k++) {
            if (q0 + k < P.out_w) { fwd_y[out_row + q0 + k] = acc[k][o] + bias; }
        }
    }
}

// ---- forward mode, fused: ry = W·rx + V_W·x + V_b, the same tiles as the forward pass ------
// (the first layer, where rx = 0, runs the forward kernel with V in place of theta).

@group(0) @binding(1) var<storage, read> jvp_x: array<f32>;
@group(0) @binding(2) var<storage, read> jvp_rx: array<f32>;
@group(0) @binding(3) var<storage, read> jvp_theta: array<f32>;
@group(0) @binding(4) var<storage, read> jvp_v: array<f32>;
@group(0) @binding(5) var<storage, read_write> jvp_ry: array<f32>;

@compute @workgroup_size(WG)
fn jvp(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = output_tile(flat_index(gid, nwg));
    if (!tile.valid) { return; }
    let n = tile.n;
    let oc0 = tile.oc0;
    let p = tile.p;
    let q0 = tile.q0;
    let rows = filter_rows(oc0);
    let r0 = rows.x;
    let r1 = rows.y;
    let r2 = rows.z;
    let r3 = rows.w;
    let s = i32(P.stride);
    let ix0 = i32(q0) * s - i32(P.pad);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < P.in_c; c++) {
        let plane = (n * P.in_c + c) * P.in_h * P.in_w;
        for (var i = 0u; i < P.k_h; i++) {
            let iy = i32(p) * s + i32(i) - i32(P.pad);
            if (iy < 0 || iy >= i32(P.in_h)) { continue; }
            let row = plane + u32(iy) * P.in_w;
            for (var j = 0u; j < P.k_w; j++) {
                let k = (c * P.k_h + i) * P.k_w + j;
                let w = vec4<f32>(jvp_theta[r0 + k], jvp_theta[r1 + k], jvp_theta[r2 + k], jvp_theta[r3 + k]);
                let dw = vec4<f32>(jvp_v[r0 + k], jvp_v[r1 + k], jvp_v[r2 + k], jvp_v[r3 + k]);
                let ix = ix0 + i32(j);
                let a0 = row + clamp_x(ix);
                let a1 = row + clamp_x(ix + s);
                let a2 = row + clamp_x(ix + 2 * s);
                let a3 = row + clamp_x(ix + 3 * s);
                acc0 += padded4(w * jvp_rx[a0] + dw * jvp_x[a0], iy, ix);
                acc1 += padded4(w * jvp_rx[a1] + dw * jvp_x[a1], iy, ix + s);
                acc2 += padded4(w * jvp_rx[a2] + dw * jvp_x[a2], iy, ix + 2 * s);
                acc3 += padded4(w * jvp_rx[a3] + dw * jvp_x[a3], iy, ix + 3 * s);
            }
        }
    }
    let acc = mat4x4<f32>(acc0, acc1, acc2, acc3);
    for (var o = 0u; o < B; o++) {
        let oc = oc0 + o;
        if (oc >= P.out_c) { break; }
        let bias = jvp_v[P.b_off + oc];
        let out_row = ((n * P.out_c + oc) * P.out_h + p) * P.out_w;
        for (var k = 0u; k < B; k++) {
            if (q0 + k < P.out_w) { jvp_ry[out_row + q0 + k] = acc[k][o] + bias; }
        }
    }
}

// ---- backward to the input: one invocation per (sample, 4 input channels, row, 4 columns) --
//   dx[n,c,h,w] = sum over (o,i,j) with h = p*stride + i - pad, w = q*stride + j - pad
//                 of W[o,c,i,j] * dy[n,o,p,q]

@group(0) @binding(1) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_theta: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_dx: array<f32>;

// The output column that input column w meets through kernel column j, if any.
fn source_column(w: u32, j: u32) -> vec2<i32> {
    let tx = i32(w + P.pad) - i32(j);
    let s = i32(P.stride);
    let valid = tx >= 0 && tx % s == 0 && tx / s < i32(P.out_w);
    return vec2<i32>(select(0, tx / s, valid), select(0, 1, valid));
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let col_blocks = blocks(P.in_w);
    let c_blocks = blocks(P.in_c);
    if (t >= P.batch * c_blocks * P.in_h * col_blocks) { return; }
    let w0 = (t % col_blocks) * B;
    let h = (t / col_blocks) % P.in_h;
    let c0 = ((t / (col_blocks * P.in_h)) % c_blocks) * B;
    let n = t / (col_blocks * P.in_h * c_blocks);
    let s = i32(P.stride);
    let taps = P.in_c * P.k_h * P.k_w;
    let plane_k = P.k_h * P.k_w;
    let c_1 = min(c0 + 1u, P.in_c - 1u) * plane_k;
    let c_2 = min(c0 + 2u, P.in_c - 1u) * plane_k;
    let c_3 = min(c0 + 3u, P.in_c - 1u) * plane_k;
    // acc_k holds the 4 input columns w0..w0+3 of channel c0 + k.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = 0u; i < P.k_h; i++) {
        let ty = i32(h + P.pad) - i32(i);
        if (ty < 0 || ty % s != 0 || ty / s >= i32(P.out_h)) { continue; }
        let p = u32(ty / s);
        for (var j = 0u; j < P.k_w; j++) {
            let s0 = source_column(w0, j);
            let s1 = source_column(w0 + 1u, j);
            let s2 = source_column(w0 + 2u, j);
            let s3 = source_column(w0 + 3u, j);
            let mask = vec4<f32>(f32(s0.y), f32(s1.y), f32(s2.y), f32(s3.y));
            if (all(mask == vec4<f32>(0.0))) { continue; }
            let k = i * P.k_w + j;
            let k0 = P.w_off + c0 * plane_k + k;
            for (var o = 0u; o < P.out_c; o++) {
                let wo = P.w_off + o * taps + k;
                let w = vec4<f32>(bwd_theta[k0 + o * taps], bwd_theta[wo + c_1],
                                  bwd_theta[wo + c_2], bwd_theta[wo + c_3]);
                let row = ((n * P.out_c + o) * P.out_h + p) * P.out_w;
                let d = mask * vec4<f32>(bwd_dy[row + u32(s0.x)], bwd_dy[row + u32(s1.x)],
                                         bwd_dy[row + u32(s2.x)], bwd_dy[row + u32(s3.x)]);
                acc0 += w.x * d;
                acc1 += w.y * d;
                acc2 += w.z * d;
                acc3 += w.w * d;
            }
        }
    }
    let acc = mat4x4<f32>(acc0, acc1, acc2, acc3);
    for (var k = 0u; k < B; k++) {
        let c = c0 + k;
        if (c >= P.in_c) { break; }
        let row = ((n * P.in_c + c) * P.in_h + h) * P.in_w;
        for (var m = 0u; m < B; m++) {
            if (w0 + m < P.in_w) { bwd_dx[row + w0 + m] = acc[k][m]; }
        }
    }
}

// ---- backward to the parameters, in groups of samples -------------------------------------
// partial[g * (weights + out_c) + k] = the sum over the samples [g*group_size, (g+1)*group_size)
// of parameter k's gradient; k < weights is W in its layout, the rest is the bias.
// blas1::accumulate_groups then adds the groups into the gradient in a fixed order, so the
// result is repeatable bit for bit. An invocation computes 4 output channels x 4 consecutive
// taps (c, i, j) of W, or one bias.

@group(0) @binding(1) var<storage, read> par_x: array<f32>;
@group(0) @binding(2) var<storage, read> par_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> par_partial: array<f32>;

// Where tap k = (c, i, j) reads x relative to the output pixel's window corner.
struct Tap { plane: u32, i: i32, j: i32 }

fn tap(k: u32) -> Tap {
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let c = k / (P.k_w * P.k_h);
    return Tap(c * P.in_h * P.in_w, i32(i) - i32(P.pad), i32(j) - i32(P.pad));
}

fn tap_value(base: u32, tap: Tap, y0: i32, x0: i32) -> f32 {
    let iy = y0 + tap.i;
    let ix = x0 + tap.j;
    let at = base + tap.plane + u32(clamp(iy, 0, i32(P.in_h) - 1)) * P.in_w + clamp_x(ix);
    return padded(par_x[at], iy, ix);
}

@compute @workgroup_size(WG)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let taps = P.in_c * P.k_h * P.k_w;
    let weights = P.out_c * taps;
    let tap_blocks = blocks(taps);
    let weight_blocks = blocks(P.out_c) * tap_blocks;
    let per_group = weight_blocks + P.out_c;
    if (t >= per_group * P.groups) { return; }
    let r = t % per_group;
    let g = t / per_group;
    let n0 = g * P.group_size;
    let n1 = min(n0 + P.group_size, P.batch);
    let out_plane = P.out_h * P.out_w;
    let out_g = g * (weights + P.out_c);
    if (r >= weight_blocks) {
        let o = r - weight_blocks;
        var acc = 0.0;
        for (var n = n0; n < n1; n++) {
            let base = (n * P.out_c + o) * out_plane;
            for (var m = 0u; m < out_plane; m++) { acc += par_dy[base + m]; }
        }
        par_partial[out_g + weights + o] = acc;
        return;
    }
    let k0 = (r % tap_blocks) * B;
    let o0 = (r / tap_blocks) * B;
    let t0 = tap(min(k0, taps - 1u));
    let t1 = tap(min(k0 + 1u, taps - 1u));
    let t2 = tap(min(k0 + 2u, taps - 1u));
    let t3 = tap(min(k0 + 3u, taps - 1u));
    let d1 = min(o0 + 1u, P.out_c - 1u) - o0;
    let d2 = min(o0 + 2u, P.out_c - 1u) - o0;
    let d3 = min(o0 + 3u, P.out_c - 1u) - o0;
    let s = i32(P.stride);
    // acc_m holds output channel o0 + m at the 4 taps k0..k0+3.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = n0; n < n1; n++) {
        let x_base = n * P.in_c * P.in_h * P.in_w;
        let dy_base = (n * P.out_c + o0) * out_plane;
        for (var p = 0u; p < P.out_h; p++) {
            let y0 = i32(p) * s;
            for (var q = 0u; q < P.out_w; q++) {
                let x0 = i32(q) * s;
                let at = dy_base + p * P.out_w + q;
                let d = vec4<f32>(par_dy[at], par_dy[at + d1 * out_plane],
                                  par_dy[at + d2 * out_plane], par_dy[at + d3 * out_plane]);
                let v = vec4<f32>(tap_value(x_base, t0, y0, x0), tap_value(x_base, t1, y0, x0),
                                  tap_value(x_base, t2, y0, x0), tap_value(x_base, t3, y0, x0));
                acc0 += d.x * v;
                acc1 += d.y * v;
                acc2 += d.z * v;
                acc3 += d.w * v;
            }
        }
    }
    let acc = mat4x4<f32>(acc0, acc1, acc2, acc3);
    for (var m = 0u; m < B; m++) {
        let o = o0 + m;
        if (o >= P.out_c) { break; }
        for (var k = 0u; k < B; k++) {
            if (k0 + k < taps) { par_partial[out_g + o * taps + k0 + k] = acc[m][k]; }
        }
    }
}
