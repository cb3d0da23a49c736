//! The workgroup-memory tiles of shaders/gemm_tile.wgsl, shared by the dense product
//! ([`super::matmul`]) and the tiled convolutions ([`super::conv`]): the tile sizes the
//! shaders are compiled with and the dispatch they need.

use crate::gpu::WORKGROUP_SIZE;

/// The columns of the tile of C one workgroup computes; its rows are PER × ROWS.
pub(super) const TILE: usize = 64;
/// The steps of K.
const STEP: usize = 16;
/// Invocations along each side of the workgroup's 8 × 8 grid.
const PER: usize = 8;

// The tile maps the workgroup's invocations onto a PER × PER grid.
const _: () = assert!(WORKGROUP_SIZE as usize == PER * PER && TILE == PER * PER);

/// The constants gemm_tile.wgsl is compiled with.
pub(super) const CONSTANTS: &[(&str, u32)] =
    &[("TILE", TILE as u32), ("STEP", STEP as u32), ("PER", PER as u32)];

/// Results per invocation along the rows (the ROWS override): the fewest PER-row bands that
/// cover m, up to PER, so that a layer with 8 channels does not compute 56 rows of padding.
pub(super) fn rows_per_invocation(m: usize) -> usize {
    m.div_ceil(PER).next_power_of_two().min(PER)
}

/// Invocations of a product with an m × n result, `rows` results per invocation along m.
pub(super) fn invocations(m: usize, n: usize, rows: usize) -> u64 {
    let tiles = m.div_ceil(PER * rows) * n.div_ceil(TILE);
    (tiles * TILE) as u64
}
