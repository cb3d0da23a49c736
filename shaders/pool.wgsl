// Max-pooling over size x size windows with a stride, no padding, its backward pass, and
// its forward-mode derivative (Jv: the direction's value at the stored arg-max).
// Layouts: x [batch, channels, in_h, in_w]; y and argmax [batch, channels, out_h, out_w],
// out = (in - size) / stride + 1. argmax holds the index h * in_w + w, within its plane, of
// the first largest value of the window; later passes (gradient, Jv) route through it.
//
// With P.relu = 1 the pass is ReLU then max-pool, computed as max-pool then ReLU (the two
// commute: max(relu(a), relu(b)) = relu(max(a, b))), which touches a quarter of the values
// and saves the ReLU passes: a window whose maximum is not positive stores NO_ROUTE as its
// arg-max, so neither the gradient nor a direction passes through it (ReLU's mask).

struct Params {
    planes: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, size: u32, stride: u32, relu: u32,
}

const NO_ROUTE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_argmax: array<u32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let out_plane = P.out_h * P.out_w;
    if (t >= P.planes * out_plane) { return; }
    let plane = t / out_plane;
    let y0 = ((t % out_plane) / P.out_w) * P.stride;
    let x0 = (t % P.out_w) * P.stride;
    let base = plane * P.in_h * P.in_w;
    var best = y0 * P.in_w + x0;
    var best_value = fwd_x[base + best];
    for (var i = 0u; i < P.size; i++) {
        for (var j = 0u; j < P.size; j++) {
            let at = (y0 + i) * P.in_w + x0 + j;
            let v = fwd_x[base + at];
            if (v > best_value) { best_value = v; best = at; }
        }
    }
    if (P.relu != 0u) {
        fwd_y[t] = max(best_value, 0.0);
        fwd_argmax[t] = select(NO_ROUTE, best, best_value > 0.0);
    } else {
        fwd_y[t] = best_value;
        fwd_argmax[t] = best;
    }
}

// One invocation per input element: the sum of dy over the windows whose arg-max it is.
// Gathering instead of scattering needs no atomics, and overlapping windows add up in a
// fixed order.

@group(0) @binding(1) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> bwd_dx: array<f32>;

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let in_plane = P.in_h * P.in_w;
    if (t >= P.planes * in_plane) { return; }
    let plane = t / in_plane;
    let at = t % in_plane;
    let h = at / P.in_w;
    let w = at % P.in_w;
    // Windows p with p*stride <= h < p*stride + size.
    let p_lo = select(0u, (h + 1u - P.size + P.stride - 1u) / P.stride, h + 1u > P.size);
    let p_hi = min(h / P.stride + 1u, P.out_h);
    let q_lo = select(0u, (w + 1u - P.size + P.stride - 1u) / P.stride, w + 1u > P.size);
    let q_hi = min(w / P.stride + 1u, P.out_w);
    var acc = 0.0;
    for (var p = p_lo; p < p_hi; p++) {
        for (var q = q_lo; q < q_hi; q++) {
            let o = (plane * P.out_h + p) * P.out_w + q;
            if (bwd_argmax[o] == at) { acc += bwd_dy[o]; }
        }
    }
    bwd_dx[t] = acc;
}

// ---- forward mode: ry[t] = rx[argmax[t]] in the same plane --------------------------------

@group(0) @binding(1) var<storage, read> jvp_rx: array<f32>;
@group(0) @binding(2) var<storage, read> jvp_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> jvp_ry: array<f32>;

@compute @workgroup_size(WG)
fn jvp(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let out_plane = P.out_h * P.out_w;
    if (t >= P.planes * out_plane) { return; }
    let at = jvp_argmax[t];
    let routed = jvp_rx[(t / out_plane) * P.in_h * P.in_w + min(at, P.in_h * P.in_w - 1u)];
    jvp_ry[t] = select(0.0, routed, at != NO_ROUTE);
}
