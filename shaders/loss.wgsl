// Per-sample losses and their gradients with respect to the network's output z.
// Layouts: z and dz [batch, classes]; labels [batch] (u32 in 0..classes);
// loss [*], written at loss[loss_off + n] so one buffer can hold a whole data set.
//   squared error:          xi = sum_k (z_k - y_k)^2 with one-hot y,  dxi/dz = 2 (z - y)
//   softmax cross-entropy:  xi = -log p_label, p = softmax(z),      dxi/dz = p - e_label
// dz is multiplied by `scale` (1/l for the objective), so back-propagation yields the
// data term of the gradient directly.
//
// The Hessians B = d2 xi / dz2, applied to u [batch, classes] without forming B, times `scale`:
//   squared error:          B u = 2 u
//   softmax cross-entropy:  B u = p * u - p (p . u),  p = softmax(z) recomputed from z

struct Params { batch: u32, classes: u32, loss_off: u32, scale: f32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;

@compute @workgroup_size(WG)
fn squared_error(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= P.batch) { return; }
    let base = n * P.classes;
    var total = 0.0;
    for (var k = 0u; k < P.classes; k++) {
        let diff = z[base + k] - select(0.0, 1.0, k == labels[n]);
        total += diff * diff;
        dz[base + k] = P.scale * 2.0 * diff;
    }
    loss[P.loss_off + n] = total;
}

@compute @workgroup_size(WG)
fn softmax_cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= P.batch) { return; }
    let base = n * P.classes;
    // Shift by the largest output so that exp never overflows.
    var top = z[base];
    for (var k = 1u; k < P.classes; k++) { top = max(top, z[base + k]); }
    var sum = 0.0;
    for (var k = 0u; k < P.classes; k++) { sum += exp(z[base + k] - top); }
    let label = labels[n];
    for (var k = 0u; k < P.classes; k++) {
        let p = exp(z[base + k] - top) / sum;
        dz[base + k] = P.scale * (p - select(0.0, 1.0, k == label));
    }
    loss[P.loss_off + n] = log(sum) - (z[base + label] - top);
}

// B is constant for squared error: no z.
@group(0) @binding(1) var<storage, read> sq_u: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_bu: array<f32>;

@compute @workgroup_size(WG)
fn squared_error_hessian(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= P.batch) { return; }
    for (var k = n * P.classes; k < (n + 1u) * P.classes; k++) {
        sq_bu[k] = P.scale * 2.0 * sq_u[k];
    }
}

@group(0) @binding(1) var<storage, read> hess_z: array<f32>;
@group(0) @binding(2) var<storage, read> hess_u: array<f32>;
@group(0) @binding(3) var<storage, read_write> hess_bu: array<f32>;

@compute @workgroup_size(WG)
fn softmax_hessian(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= P.batch) { return; }
    let base = n * P.classes;
    var top = hess_z[base];
    for (var k = 1u; k < P.classes; k++) { top = max(top, hess_z[base + k]); }
    var sum = 0.0;
    var pu = 0.0;
    for (var k = 0u; k < P.classes; k++) {
        let e = exp(hess_z[base + k] - top);
        sum += e;
        pu += e * hess_u[base + k];
    }
    pu /= sum;
    for (var k = 0u; k < P.classes; k++) {
        let p = exp(hess_z[base + k] - top) / sum;
        hess_bu[base + k] = P.scale * p * (hess_u[base + k] - pu);
    }
}
