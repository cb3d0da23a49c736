// The scalar updates of conjugate gradient on the device, so that a CG step needs no
// read-back, and the test that ends CG; and the diagonal preconditioner's kernels. The slots
// of `scalars` (RR, PGP, ALPHA, BETA, RHO, STOP, STEP, SAS, DAMPING, TOL_RR, SHIFT, PROBE_SEED)
// and the reasons to stop (CONVERGED, BREAKDOWN, NON_FINITE) are
// constants generated from src/kernels/cg.rs, which says what each holds.
//
// Preconditioned CG (z = M⁻¹r) runs on ρ = rᵀz where plain CG runs on rᵀr: α = ρ/pᵀAp,
// β = ρ(new)/ρ, p = z + βp, and sᵀAs = Σ α ρ. Without a preconditioner z is r and ρ is rᵀr.
// The stop test is on rᵀr either way.
//
// alpha and beta finish the dot products pᵀ(G + λI)p and ρ from the partial sums of
// blas1's dot_partial (P.partials of them, summed in order as dot_final sums them), so that a
// step needs no dispatch for them. Once STOP holds a reason, α and β are 0: s and r keep the
// last good iterate, and beta zeroes the workgroup counts of the next step's product (the
// P.gated counts of its indirect dispatches), which then costs nothing.
//   update:       s += α p, r −= α (G + λI)p
//   axpy_scalar:  y[i] += sign * scalars[slot] * x[i]
//   xpay_scalar:  y[i]  = x[i] + scalars[slot] * y[i]
//   precondition:      z[i] = m_inv[i] * r[i]
//   rademacher:        v[i] = ±1, a hash of (i, PROBE_SEED, P.seed)
//   probe_accumulate:  d[i] = d[i] + P.sign * v[i] * (Gv)[i], d = 0 first for the first probe of
//                      a solve (P.slot = 1)
//   inverse_diagonal:  m_inv[i] = (max(d[i], 0) + SHIFT)^(-P.exponent)

struct Params { len: u32, slot: u32, sign: f32, partials: u32, gated: u32, seed: u32, exponent: f32, _pad0: u32 }

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

// α = ρ / pᵀ(G + λI)p, counting the step; or a stop when a value is not finite
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
    if (!is_finite(pgp) || !is_finite(scalars[RHO])) {
        stop = NON_FINITE;
    } else if (pgp <= 0.0) {
        stop = BREAKDOWN;
    }
    let a = select(scalars[RHO] / pgp, 0.0, stop != 0u);
    if (stop == 0u && !is_finite(a)) {
        stop = NON_FINITE;
    }
    if (stop != 0u) {
        scalars[STOP] = f32(stop);
        scalars[ALPHA] = 0.0;
        return;
    }
    scalars[ALPHA] = a;
    scalars[SAS] += a * scalars[RHO];
    scalars[STEP] += 1.0;
}

// β = ρ(new) / ρ and ρ ← ρ(new), rᵀr ← `rr`; CONVERGED once rᵀr ≤ TOL_RR (the host's test
// ‖r‖ ≤ ξ‖g‖, turned into an f32 bound on rᵀr that gives the same answer for every f32).
// Then the counts of the next step's product: as recorded while CG runs, 0 once it stopped.
@group(0) @binding(3) var<storage, read> gate_template: array<u32>;
@group(0) @binding(4) var<storage, read_write> gate_args: array<u32>;

fn finish_beta(rho: f32, rr: f32) {
    if (scalars[STOP] != 0.0) {
        scalars[BETA] = 0.0;
    } else {
        scalars[BETA] = rho / scalars[RHO];
        scalars[RHO] = rho;
        scalars[RR] = rr;
        if (scalars[RR] <= scalars[TOL_RR]) {
            scalars[STOP] = f32(CONVERGED);
        }
    }
    let stopped = scalars[STOP] != 0.0;
    for (var i = 0u; i < P.gated; i++) { gate_args[i] = select(gate_template[i], 0u, stopped); }
}

// Plain CG: the partial sums are rᵀr, which is ρ too.
@compute @workgroup_size(WG)
fn beta(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    let rr = sum_partials();
    finish_beta(rr, rr);
}

// Preconditioned CG: the partial sums are rᵀz, and `rr_partials` those of rᵀr.
@group(0) @binding(5) var<storage, read> rr_partials: array<f32>;

@compute @workgroup_size(WG)
fn beta_preconditioned(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) >= P.len) { return; }
    var rr = 0.0;
    for (var b = 0u; b < P.partials; b++) { rr += rr_partials[b]; }
    finish_beta(sum_partials(), rr);
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

@group(0) @binding(1) var<storage, read> pre_m_inv: array<f32>;
@group(0) @binding(2) var<storage, read> pre_r: array<f32>;
@group(0) @binding(3) var<storage, read_write> pre_z: array<f32>;

@compute @workgroup_size(WG)
fn precondition(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    pre_z[i] = pre_m_inv[i] * pre_r[i];
}

// A 32-bit integer hash (PCG's output permutation of one LCG step): well mixed in every bit,
// so that the low bit of consecutive inputs is a fair coin.
fn hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@group(0) @binding(1) var<storage, read> probe_scalars: array<f32>;
@group(0) @binding(2) var<storage, read_write> probe_v: array<f32>;

@compute @workgroup_size(WG)
fn rademacher(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    let seed = hash(u32(probe_scalars[PROBE_SEED]) ^ hash(P.seed));
    probe_v[i] = select(-1.0, 1.0, (hash(i ^ seed) & 1u) == 1u);
}

@group(0) @binding(1) var<storage, read> acc_v: array<f32>;
@group(0) @binding(2) var<storage, read> acc_gv: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc_d: array<f32>;

@compute @workgroup_size(WG)
fn probe_accumulate(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    let before = select(acc_d[i], 0.0, P.slot != 0u);
    acc_d[i] = before + P.sign * acc_v[i] * acc_gv[i];
}

@group(0) @binding(2) var<storage, read> inv_d: array<f32>;
@group(0) @binding(3) var<storage, read_write> inv_m: array<f32>;

@compute @workgroup_size(WG)
fn inverse_diagonal(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    inv_m[i] = pow(max(inv_d[i], 0.0) + probe_scalars[SHIFT], -P.exponent);
}
