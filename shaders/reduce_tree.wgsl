// workgroup_sum for adapters without subgroups: a tree in workgroup memory, in a fixed order,
// so that every workgroup that sums the same values gets the same bits. Called by every
// invocation of the workgroup, in uniform control flow; every invocation gets the total.
// (reduce_subgroup.wgsl is the same function with subgroup operations.)

struct Lanes {
    @builtin(local_invocation_index) index: u32,
}

var<workgroup> tree_sums: array<f32, WG>;

fn workgroup_sum(value: f32, lanes: Lanes) -> f32 {
    tree_sums[lanes.index] = value;
    workgroupBarrier();
    // WG is a power of two (src/gpu/pipeline.rs).
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lanes.index < half) {
            tree_sums[lanes.index] += tree_sums[lanes.index + half];
        }
        workgroupBarrier();
    }
    let total = tree_sums[0];
    // Before the memory is used again by the caller's next sum.
    workgroupBarrier();
    return total;
}
