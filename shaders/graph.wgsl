// The operations a residual network adds to a chain, besides the sum (blas1's add):
//   shift:      y[i] = x[i] + c[offset]              a scalar bias, c = θ (or, forward mode, v)
//   broadcast:  y[i] = c[offset]                     forward mode of a bias at a zero direction
//   multiply:   y[i] = c[offset] * x[i]              a scalar scale (and its backward pass)
//   scale_jvp:  ry[i] = θ[offset] * rx[i] + v[offset] * x[i]     forward mode of a scale
//   subsample_forward:  y[n, c, p, q] = x[n, c, p * s, q * s] for c < in_c, 0 beyond: every
//                       s-th row and column, zero channels appended (linear: also forward mode)
//   subsample_backward: dx[n, c, h, w] = dy[n, c, h / s, w / s] where s divides h and w, else 0
//   affine:        y[n, c, ·] = a[c] * x[n, c, ·] + b[c], a and b constants (a frozen layer):
//                  coefficients = a (in_c values) then b (in_c values)
//   affine_linear: y[n, c, ·] = a[c] * x[n, c, ·]: its backward pass and forward mode
// The gradients of the scalars are sums over every value (blas1's sum_partial and
// dot_partial, then accumulate_groups into θ's slot), so they repeat bit for bit.

struct Params {
    len: u32, offset: u32, batch: u32, in_c: u32,
    in_h: u32, in_w: u32, out_c: u32, out_h: u32,
    out_w: u32, stride: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> shift_c: array<f32>;
@group(0) @binding(2) var<storage, read> shift_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> shift_y: array<f32>;

@compute @workgroup_size(WG)
fn shift(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    shift_y[i] = shift_x[i] + shift_c[P.offset];
}

@compute @workgroup_size(WG)
fn multiply(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    shift_y[i] = shift_c[P.offset] * shift_x[i];
}

@group(0) @binding(1) var<storage, read> broadcast_c: array<f32>;
@group(0) @binding(2) var<storage, read_write> broadcast_y: array<f32>;

@compute @workgroup_size(WG)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    broadcast_y[i] = broadcast_c[P.offset];
}

@group(0) @binding(1) var<storage, read> jvp_theta: array<f32>;
@group(0) @binding(2) var<storage, read> jvp_v: array<f32>;
@group(0) @binding(3) var<storage, read> jvp_rx: array<f32>;
@group(0) @binding(4) var<storage, read> jvp_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> jvp_ry: array<f32>;

@compute @workgroup_size(WG)
fn scale_jvp(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    jvp_ry[i] = jvp_theta[P.offset] * jvp_rx[i] + jvp_v[P.offset] * jvp_x[i];
}

@group(0) @binding(1) var<storage, read> sub_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> sub_out: array<f32>;

// One invocation per output value.
@compute @workgroup_size(WG)
fn subsample_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let plane = P.out_h * P.out_w;
    if (t >= P.batch * P.out_c * plane) { return; }
    let n = t / (P.out_c * plane);
    let c = (t / plane) % P.out_c;
    let p = (t % plane) / P.out_w;
    let q = t % P.out_w;
    var value = 0.0;
    if (c < P.in_c) {
        value = sub_in[((n * P.in_c + c) * P.in_h + p * P.stride) * P.in_w + q * P.stride];
    }
    sub_out[t] = value;
}

// One invocation per input value.
@compute @workgroup_size(WG)
fn subsample_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let plane = P.in_h * P.in_w;
    if (t >= P.batch * P.in_c * plane) { return; }
    let n = t / (P.in_c * plane);
    let c = (t / plane) % P.in_c;
    let h = (t % plane) / P.in_w;
    let w = t % P.in_w;
    var value = 0.0;
    if (h % P.stride == 0u && w % P.stride == 0u) {
        value = sub_in[((n * P.out_c + c) * P.out_h + h / P.stride) * P.out_w + w / P.stride];
    }
    sub_out[t] = value;
}

@group(0) @binding(1) var<storage, read> affine_ab: array<f32>;
@group(0) @binding(2) var<storage, read> affine_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> affine_y: array<f32>;

fn affine_channel(i: u32) -> u32 {
    return (i / (P.in_h * P.in_w)) % P.in_c;
}

@compute @workgroup_size(WG)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    let c = affine_channel(i);
    affine_y[i] = affine_ab[c] * affine_x[i] + affine_ab[P.in_c + c];
}

@compute @workgroup_size(WG)
fn affine_linear(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    affine_y[i] = affine_ab[affine_channel(i)] * affine_x[i];
}
