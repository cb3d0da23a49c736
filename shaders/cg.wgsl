// The scalar updates of conjugate gradient on the device, so that a CG step needs no
// read-back, and the test that ends CG; and the diagonal preconditioner's kernels. The slots
// of `scalars` (RR, PGP, ALPHA, BETA, RHO, RHO_STEP, STOP, STOP_STEP, STEP, SAS, DAMPING,
// TOL_RR, SHIFT, PROBE_SEED, PROBE_INDEX) and the reasons to stop (CONVERGED, BREAKDOWN, NON_FINITE) are
// constants generated from src/kernels/cg.rs, which says what each holds.
//
// Preconditioned CG (z = M⁻¹r) runs on ρ = rᵀz where plain CG runs on rᵀr: α = ρ/pᵀAp,
// β = ρ(new)/ρ, p = z + βp, and sᵀAs = Σ α ρ. Without a preconditioner z is r and ρ is rᵀr.
// The stop test is on rᵀr either way.
//
// After the product (G + λI)p and the partial sums of pᵀ(G + λI)p (blas1's dot_partial), a
// step is two kernels over the same grid of P.partials workgroups:
//   advance:    α from pᵀ(G + λI)p, s += α p, r −= α (G + λI)p (z = M⁻¹r), and the partial
//               sums of rᵀr (and rᵀz) for conjugate;
//   conjugate:  β from them, p = r + β p (z + β p), the stop test.
// Each workgroup finishes the sums it needs itself (at most MAX_DOT_GROUPS values, summed
// alike in every workgroup, so that all find the same α or β); the first invocation of the
// first workgroup records the scalars. No slot is both read and written within a kernel:
// advance reads RHO and STOP and leaves the step's in RHO_STEP and STOP_STEP, which conjugate
// reads to write RHO and STOP. `sums` holds three parts of P.partials values: those of
// pᵀ(G + λI)p, of rᵀr, of rᵀz.
// Once STOP holds a reason, α and β are 0: s and r keep the last good iterate, and conjugate
// zeroes the workgroup counts of the next step's product (the P.gated counts of its indirect
// dispatches), which then costs nothing.
//   axpy_scalar:  y[i] += sign * scalars[slot] * x[i]
//   precondition:      z[i] = m_inv[i] * r[i]
//   rademacher:        v[i] = ±1, a hash of (i, PROBE_SEED, PROBE_INDEX)
//   probe_accumulate:  d[i] = d[i] + P.sign * v[i] * (Gv)[i] (d is zeroed before the first
//                      probe), and PROBE_INDEX moves on to the next probe: one recorded probe
//                      is replayed for them all
//   inverse_diagonal:  m_inv[i] = (max(d[i], 0) + SHIFT)^(-P.exponent)

struct Params { len: u32, slot: u32, sign: f32, partials: u32, gated: u32, exponent: f32, preconditioned: u32 }

@group(0) @binding(0) var<uniform> P: Params;

// One declaration each for advance and conjugate (so that sum_part serves both): conjugate only
// reads `sums`, but shares advance's read_write binding.
@group(0) @binding(1) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

// The sum of part `part` of `sums`, the same in every workgroup.
fn sum_part(part: u32, lanes: Lanes) -> f32 {
    var acc = 0.0;
    for (var b = lanes.index; b < P.partials; b += WG) { acc += sums[part * P.partials + b]; }
    return workgroup_sum(acc, lanes);
}

fn is_finite(x: f32) -> bool {
    // By the bits: WGSL lets a compiler assume floats are finite, so a comparison such as
    // abs(x) <= f32::MAX may be folded to true for NaN (lavapipe did). Exponent all ones is
    // an infinity or a NaN.
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// α = ρ / pᵀ(G + λI)p, or 0 with a reason to stop: NON_FINITE when a value is not finite,
// BREAKDOWN when pᵀ(G + λI)p is not positive, decided before dividing so that 0/0 never has
// to be recognised. `record`: this invocation writes the step's scalars (and counts it).
fn step_length(lanes: Lanes, record: bool) -> f32 {
    let pgp = sum_part(0u, lanes);
    let rho = scalars[RHO];
    var stop = u32(scalars[STOP]);
    if (stop == 0u) {
        if (!is_finite(pgp) || !is_finite(rho)) {
            stop = NON_FINITE;
        } else if (pgp <= 0.0) {
            stop = BREAKDOWN;
        }
    }
    var a = 0.0;
    if (stop == 0u) {
        a = rho / pgp;
        if (!is_finite(a)) {
            stop = NON_FINITE;
            a = 0.0;
        }
    }
    if (record) {
        scalars[PGP] = pgp;
        scalars[ALPHA] = a;
        scalars[RHO_STEP] = rho;
        scalars[STOP_STEP] = f32(stop);
        if (stop == 0u) {
            scalars[SAS] += a * rho;
            scalars[STEP] += 1.0;
        }
    }
    return a;
}

@group(0) @binding(3) var<storage, read> step_p: array<f32>;
@group(0) @binding(4) var<storage, read> step_ap: array<f32>;
@group(0) @binding(5) var<storage, read_write> step_s: array<f32>;
@group(0) @binding(6) var<storage, read_write> step_r: array<f32>;
@group(0) @binding(7) var<storage, read> step_m_inv: array<f32>;
@group(0) @binding(8) var<storage, read_write> step_z: array<f32>;

// s += α p and r −= α (G + λI)p at i; returns the new r[i].
fn step_at(i: u32, a: f32) -> f32 {
    step_s[i] += a * step_p[i];
    let r = step_r[i] - a * step_ap[i];
    step_r[i] = r;
    return r;
}

@compute @workgroup_size(WG)
fn advance(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           lanes: Lanes) {
    let a = step_length(lanes, wid.x == 0u && lanes.index == 0u);
    var rr = 0.0;
    for (var i = wid.x * WG + lanes.index; i < P.len; i += nwg.x * WG) {
        let r = step_at(i, a);
        rr += r * r;
    }
    let rr_sum = workgroup_sum(rr, lanes);
    if (lanes.index == 0u) { sums[P.partials + wid.x] = rr_sum; }
}

@compute @workgroup_size(WG)
fn advance_preconditioned(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          lanes: Lanes) {
    let a = step_length(lanes, wid.x == 0u && lanes.index == 0u);
    var rr = 0.0;
    var rz = 0.0;
    for (var i = wid.x * WG + lanes.index; i < P.len; i += nwg.x * WG) {
        let r = step_at(i, a);
        let z = step_m_inv[i] * r;
        step_z[i] = z;
        rr += r * r;
        rz += r * z;
    }
    let rr_sum = workgroup_sum(rr, lanes);
    let rz_sum = workgroup_sum(rz, lanes);
    if (lanes.index == 0u) {
        sums[P.partials + wid.x] = rr_sum;
        sums[2u * P.partials + wid.x] = rz_sum;
    }
}

// β = ρ(new) / ρ, then p = r + β p (z + β p preconditioned). The first invocation records
// ρ ← ρ(new) and rᵀr ← rᵀr(new), CONVERGED once rᵀr ≤ TOL_RR (the host's test ‖r‖ ≤ ξ‖g‖,
// turned into an f32 bound on rᵀr that gives the same answer for every f32), and sets the
// counts of the next step's product: as recorded while CG runs, 0 once it stopped.
@group(0) @binding(3) var<storage, read> conj_source: array<f32>;
@group(0) @binding(4) var<storage, read_write> conj_p: array<f32>;
@group(0) @binding(5) var<storage, read> gate_template: array<u32>;
@group(0) @binding(6) var<storage, read_write> gate_args: array<u32>;

@compute @workgroup_size(WG)
fn conjugate(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             lanes: Lanes) {
    let rr = sum_part(1u, lanes);
    var rho = rr;
    if (P.preconditioned != 0u) { rho = sum_part(2u, lanes); }
    let stopped_before = scalars[STOP_STEP] != 0.0;
    var stop = u32(scalars[STOP_STEP]);
    var b = 0.0;
    if (!stopped_before) {
        b = rho / scalars[RHO_STEP];
        if (rr <= scalars[TOL_RR]) { stop = CONVERGED; }
    }
    if (wid.x == 0u && lanes.index == 0u) {
        scalars[BETA] = b;
        if (!stopped_before) {
            scalars[RHO] = rho;
            scalars[RR] = rr;
        }
        scalars[STOP] = f32(stop);
        for (var i = 0u; i < P.gated; i++) { gate_args[i] = select(gate_template[i], 0u, stop != 0u); }
    }
    for (var i = wid.x * WG + lanes.index; i < P.len; i += nwg.x * WG) {
        conj_p[i] = conj_source[i] + b * conj_p[i];
    }
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
    let seed = hash(u32(probe_scalars[PROBE_SEED]) ^ hash(u32(probe_scalars[PROBE_INDEX])));
    probe_v[i] = select(-1.0, 1.0, (hash(i ^ seed) & 1u) == 1u);
}

@group(0) @binding(2) var<storage, read> acc_v: array<f32>;
@group(0) @binding(3) var<storage, read> acc_gv: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc_d: array<f32>;

@compute @workgroup_size(WG)
fn probe_accumulate(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i == 0u) {
        // No invocation of this kernel reads the index: rademacher read it before.
        scalars[PROBE_INDEX] = scalars[PROBE_INDEX] + 1.0;
    }
    if (i >= P.len) { return; }
    acc_d[i] = acc_d[i] + P.sign * acc_v[i] * acc_gv[i];
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
