// The scalar updates of conjugate gradient on the device, so that a CG step needs no
// read-back. The slots of `scalars` (RR, PGP, ALPHA, BETA, RR_NEW, STOP, STOP_AT, SAS) are
// constants generated from src/kernels/cg.rs, which says what each holds.
// A step whose pᵀ(G + λI)p is not positive, or whose α is not finite, sets STOP: α and β
// are 0 from then on, so s keeps the last good iterate.
//   axpy_scalar:  y[i] += sign * scalars[slot] * x[i]
//   xpay_scalar:  y[i]  = x[i] + scalars[slot] * y[i]

struct Params { len: u32, slot: u32, step: u32, sign: f32 }

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read_write> scalars: array<f32>;

fn is_finite(x: f32) -> bool {
    // NaN fails every comparison; infinities exceed the largest finite f32.
    return abs(x) <= 3.4028235e38;
}

@compute @workgroup_size(WG)
fn alpha(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    let a = scalars[RR] / scalars[PGP];
    if (scalars[STOP] != 0.0 || !(scalars[PGP] > 0.0) || !is_finite(a)) {
        if (scalars[STOP] == 0.0) {
            scalars[STOP] = 1.0;
            scalars[STOP_AT] = f32(P.step);
        }
        scalars[ALPHA] = 0.0;
        return;
    }
    scalars[ALPHA] = a;
    scalars[SAS] += a * scalars[RR];
}

@compute @workgroup_size(WG)
fn beta(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    if (scalars[STOP] != 0.0) {
        scalars[BETA] = 0.0;
        return;
    }
    scalars[BETA] = scalars[RR_NEW] / scalars[RR];
    scalars[RR] = scalars[RR_NEW];
}

@group(0) @binding(1) var<storage, read> vec_scalars: array<f32>;
@group(0) @binding(2) var<storage, read> vec_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> vec_y: array<f32>;

@compute @workgroup_size(WG)
fn axpy_scalar(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    vec_y[i] += P.sign * vec_scalars[P.slot] * vec_x[i];
}

@compute @workgroup_size(WG)
fn xpay_scalar(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    vec_y[i] = vec_x[i] + vec_scalars[P.slot] * vec_y[i];
}
