// workgroup_sum where the device has subgroups (Features::SUBGROUP): each subgroup sums in
// registers, then its first invocation leaves the subgroup's sum for the others, which add
// them in subgroup order. Subgroup sizes differ (8 on lavapipe, 32 on NVIDIA, 8–64 elsewhere),
// so nothing here assumes one. Same contract as reduce_tree.wgsl.

struct Lanes {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

var<workgroup> subgroup_sums: array<f32, WG>;

fn workgroup_sum(value: f32, lanes: Lanes) -> f32 {
    let sum = subgroupAdd(value);
    if (lanes.lane == 0u) {
        subgroup_sums[lanes.subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var s = 0u; s < lanes.subgroups; s++) {
        total += subgroup_sums[s];
    }
    // Before the memory is used again by the caller's next sum.
    workgroupBarrier();
    return total;
}
