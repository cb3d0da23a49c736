// The scalar updates of conjugate gradient on the device, so that a CG step needs no
// read-back, and the test that ends CG. The slots of `scalars` (RR, PGP, ALPHA, BETA, RR_NEW,
// STOP, STEP, SAS, DAMPING, TOL_RR) and the reasons to stop (CONVERGED, BREAKDOWN,
// NON_FINITE) are constants generated from src/kernels/cg.rs, which says what each holds.
//
// alpha and beta finish the dot products pᵀ(G + λI)p and rᵀr from the partial sums of
// blas1's dot_partial (P.partials of them, summed in order as dot_final sums them), so that a
// step needs no dispatch for them. Once STOP holds a reason, α and β are 0: s and r keep the
// last good iterate, and beta zeroes the workgroup counts of the next step's product (the
// P.gated counts of its indirect dispatches), which then costs nothing.
//   update:       s += α p, r −= α (G + λI)p
//   axpy_scalar:  y[i] += sign * scalars[slot] * x[i]
//   xpay_scalar:  y[i]  = x[i] + scalars[slot] * y[i]

struct Params { len: u32, slot: u32, sign: f32, partials: u32, gated: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;

fn sum_partials() -> f32 {
    var acc = 0.0;
    for (var b = 0u; b < P.partials; b++) { acc += partials[b]; }
    return acc;
}

fn is_finite(x: f32) -> bool {
    // By the bits: WGSL lets a compiler assume floats are finite, so a comparison such as
    // abs(x) <= f32::MAX may be folded to true for NaN (lavapipe did). Exponent all ones is
    // an infinity or a NaN.
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// α = rᵀr / pᵀ(G + λI)p, counting the step; or a stop when a value is not finite
// (NON_FINITE) or pᵀ(G + λI)p is not positive (BREAKDOWN), decided before dividing so that
// 0/0 never has to be recognised.
@compute @workgroup_size(WG)
fn alpha(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    scalars[PGP] = sum_partials();
    if (scalars[STOP] != 0.0) {
        scalars[ALPHA] = 0.0;
        return;
    }
    let pgp = scalars[PGP];
    var stop = 0u;
    if (!is_finite(pgp) || !is_finite(scalars[RR])) {
        stop = NON_FINITE;
    } else if (pgp <= 0.0) {
        stop = BREAKDOWN;
    }
    let a = select(scalars[RR] / pgp, 0.0, stop != 0u);
    if (stop == 0u && !is_finite(a)) {
        stop = NON_FINITE;
    }
    if (stop != 0u) {
        scalars[STOP] = f32(stop);
        scalars[ALPHA] = 0.0;
        return;
    }
    scalars[ALPHA] = a;
    scalars[SAS] += a * scalars[RR];
    scalars[STEP] += 1.0;
}

// β = rᵀr(new) / rᵀr and rᵀr ← rᵀr(new); CONVERGED once rᵀr ≤ TOL_RR (the host's test
// ‖r‖ ≤ ξ‖g‖, turned into an f32 bound on rᵀr that gives the same answer for every f32).
// Then the counts of the next step's product: as recorded while CG runs, 0 once it stopped.
@group(0) @binding(3) var<storage, read> gate_template: array<u32>;
@group(0) @binding(4) var<storage, read_write> gate_args: array<u32>;

@compute @workgroup_size(WG)
fn beta(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    scalars[RR_NEW] = sum_partials();
    if (scalars[STOP] != 0.0) {
        scalars[BETA] = 0.0;
    } else {
        scalars[BETA] = scalars[RR_NEW] / scalars[RR];
        scalars[RR] = scalars[RR_NEW];
        if (scalars[RR] <= scalars[TOL_RR]) {
            scalars[STOP] = f32(CONVERGED);
        }
    }
    let stopped = scalars[STOP] != 0.0;
    for (var i = 0u; i < P.gated; i++) { gate_args[i] = select(gate_template[i], 0u, stopped); }
}

@group(0) @binding(1) var<storage, read> update_scalars: array<f32>;
@group(0) @binding(2) var<storage, read> update_p: array<f32>;
@group(0) @binding(3) var<storage, read> update_ap: array<f32>;
@group(0) @binding(4) var<storage, read_write> update_s: array<f32>;
@group(0) @binding(5) var<storage, read_write> update_r: array<f32>;

@compute @workgroup_size(WG)
fn update(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    let a = update_scalars[ALPHA];
    update_s[i] += 1.0 * a * update_p[i];
    update_r[i] += -1.0 * a * update_ap[i];
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
