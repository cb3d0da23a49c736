//! One convolution as every convolution kernel reads it: the `Params` of
//! shaders/conv_params.wgsl.

use super::super::u32_of;
use crate::nn::ConvGeometry;

crate::uniform_params! {
    pub(crate) struct Params {
        pub(super) batch: u32,
        pub(super) in_c: u32,
        pub(super) in_h: u32,
        pub(super) in_w: u32,
        pub(super) out_c: u32,
        pub(super) out_h: u32,
        pub(super) out_w: u32,
        pub(super) k_h: u32,
        pub(super) k_w: u32,
        pub(super) stride: u32,
        pub(super) pad_h: i32,
        pub(super) pad_w: i32,
        pub(super) w_off: u32,
        pub(super) b_off: u32,
        /// The weight gradient's groups of samples: samples per group, groups.
        pub(super) group_size: u32,
        pub(super) groups: u32,
        /// Taps per row of the windowed kernels' packed filters.
        pub(super) k_wp: u32,
        pub(super) has_bias: u32,
        /// Where the windowed kernels' packed direction starts, in vec4s.
        pub(super) v_filters: u32,
        /// The filters are the flipped, transposed ones of the backward pass to the input.
        pub(super) flipped: u32,
        /// The tiled product adds to what the output holds.
        pub(super) accumulate: u32,
        pub(super) _pad: [u32; 3],
    }
}

impl Params {
    /// The forward pass of layer `g` over `batch` samples, with its bias if it has one.
    pub(super) fn new(g: &ConvGeometry, batch: usize) -> Self {
        let pad = i32::try_from(g.padding).expect("padding fits in i32");
        Self {
            batch: u32_of(batch),
            in_c: u32_of(g.input.channels),
            in_h: u32_of(g.input.height),
            in_w: u32_of(g.input.width),
            out_c: u32_of(g.output.channels),
            out_h: u32_of(g.output.height),
            out_w: u32_of(g.output.width),
            k_h: u32_of(g.kernel_h),
            k_w: u32_of(g.kernel_w),
            stride: u32_of(g.stride),
            pad_h: pad,
            pad_w: pad,
            w_off: u32_of(g.weight_offset),
            b_off: u32_of(g.bias_offset),
            has_bias: u32::from(g.bias),
            ..Self::default()
        }
    }

    /// The backward pass to the input at stride 1, as a convolution of dy with the flipped,
    /// transposed filters: same kernel size, padding k − 1 − pad, no bias.
    pub(super) fn flipped(g: &ConvGeometry, batch: usize) -> Self {
        let forward = Self::new(g, batch);
        let reach = |k: usize| i32::try_from(k).expect("kernel size fits in i32") - 1 - forward.pad_h;
        Self {
            in_c: forward.out_c,
            in_h: forward.out_h,
            in_w: forward.out_w,
            out_c: forward.in_c,
            out_h: forward.in_h,
            out_w: forward.in_w,
            pad_h: reach(g.kernel_h),
            pad_w: reach(g.kernel_w),
            has_bias: 0,
            flipped: 1,
            ..forward
        }
    }
}

/// The shader part that declares these parameters and the padded-load helper.
pub(super) const PART: crate::gpu::ShaderPart = crate::shader_part!("conv_params");
