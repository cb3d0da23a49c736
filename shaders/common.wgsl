// Prepended to every kernel file by the pipeline cache (src/gpu/pipeline.rs).

// Invocations per workgroup; the host sets it as a pipeline constant.
override WG: u32 = 64u;

// The flat index of an invocation. The host splits a large 1-D dispatch over (x, y)
// workgroups to stay within maxComputeWorkgroupsPerDimension, so rows are nwg.x * WG wide.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}
