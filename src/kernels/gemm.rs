//! The matrix-product kernels shared by the dense product ([`super::matmul`]) and the tiled
//! convolutions ([`super::conv`]): which ones there are ([`GemmKernel`]), the constants their
//! shaders are compiled with and the dispatches they need.
//!
//! - shaders/gemm_tile.wgsl: scalar workgroup-memory tiles, (8 · ROWS) × 64 per workgroup;
//! - shaders/gemm_direct.wgsl: BLOCK_ROWS × 4 results per invocation in vec4 registers, no
//!   workgroup memory;
//! - shaders/gemm_tile4.wgsl: vec4 workgroup-memory tiles, 32 × 32 per workgroup of 8 × 8.
//!
//! Each gets its operands from the shader it is part of, so the same kernels run the dense
//! product and the convolutions as implicit products.

use crate::gpu::WORKGROUP_SIZE;

/// The columns of the tile of C one workgroup of gemm_tile computes; its rows are PER × ROWS.
pub(super) const TILE: usize = 64;
/// The steps of K.
const STEP: usize = 16;
/// Invocations along each side of the workgroup's 8 × 8 grid.
const PER: usize = 8;
/// The side of gemm_tile4's tiles.
const TILE4: usize = 32;

// The tiles map the workgroup's invocations onto a PER × PER grid, and gemm_tile4's 8 × 8
// invocations compute 4 × 4 values each.
const _: () = assert!(WORKGROUP_SIZE as usize == PER * PER && TILE == PER * PER && TILE4 == 4 * PER);

/// The constants gemm_tile.wgsl is compiled with.
pub(super) const CONSTANTS: &[(&str, u32)] =
    &[("TILE", TILE as u32), ("STEP", STEP as u32), ("PER", PER as u32)];

/// Which kernel computes a matrix product. Every one computes the same values up to the order
/// of the sums; which is fastest depends on the adapter and the shape, so the tuner
/// ([`crate::tune`]) times them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GemmKernel {
    /// Scalar workgroup-memory tiles (gemm_tile.wgsl), their rows per invocation fitted to M.
    Tiled,
    /// `rows` × 4 results per invocation in registers (gemm_direct.wgsl): 1, 2, 4 or 8.
    Direct { rows: u8 },
    /// vec4 workgroup-memory tiles of 32 × 32 (gemm_tile4.wgsl).
    Tile4,
}

impl GemmKernel {
    /// Every candidate, in the order the tuner tries them.
    pub const ALL: [Self; 6] = [
        Self::Direct { rows: 8 },
        Self::Direct { rows: 4 },
        Self::Direct { rows: 2 },
        Self::Direct { rows: 1 },
        Self::Tile4,
        Self::Tiled,
    ];

    /// Invocations of a product with an m × n result.
    pub(super) fn invocations(self, m: usize, n: usize) -> u64 {
        let per_group = WORKGROUP_SIZE as usize;
        match self {
            Self::Tiled => {
                let rows = tiled_rows(m);
                (m.div_ceil(PER * rows) * n.div_ceil(TILE) * per_group) as u64
            }
            Self::Direct { rows } => (m.div_ceil(usize::from(rows)) * n.div_ceil(4)) as u64,
            Self::Tile4 => (m.div_ceil(TILE4) * n.div_ceil(TILE4) * per_group) as u64,
        }
    }
}

impl std::fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tiled => f.write_str("tiled"),
            Self::Direct { rows } => write!(f, "direct{rows}x4"),
            Self::Tile4 => f.write_str("tile4"),
        }
    }
}

impl std::str::FromStr for GemmKernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.to_string() == s).ok_or_else(|| {
            format!("{s:?}: expected one of tiled, tile4, direct1x4, direct2x4, direct4x4, direct8x4")
        })
    }
}

/// Rows per invocation of gemm_tile (the ROWS override): the fewest PER-row bands that cover
/// m, up to PER, so that a layer with 8 channels does not compute 56 rows of padding.
pub(super) fn tiled_rows(m: usize) -> usize {
    m.div_ceil(PER).next_power_of_two().min(PER)
}
