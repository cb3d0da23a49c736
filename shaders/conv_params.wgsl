// One 2-D convolution with bias, zero padding and stride, as every convolution kernel reads
// it (conv_windowed.wgsl, conv_tiled.wgsl); src/kernels/conv/params.rs fills it.
//
// Layouts (row-major): x [batch, in_c, in_h, in_w]; y [batch, out_c, out_h, out_w];
// weights inside the flat parameter vector theta at w_off, [out_c, in_c, k_h, k_w]
// (PyTorch's layout), bias at b_off, [out_c]. A dense layer is the convolution whose kernel
// covers its whole input, so it runs through the same kernels.
//
//   y[n,o,p,q] = b[o] + sum_{c,i,j} W[o,c,i,j] * x[n, c, p*stride + i - pad_h, q*stride + j - pad_w]

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, k_h: u32,
    k_w: u32, stride: u32, pad_h: i32, pad_w: i32,
    w_off: u32, b_off: u32,
    // The weight gradient's groups of samples (conv_windowed.wgsl).
    group_size: u32, groups: u32,
    // Filter taps per row in the packed filters (k_w rounded up to CHUNK); whether to add the
    // bias; where pack_filters writes (the packed direction of forward mode starts there, in
    // vec4s); whether the filters are the flipped, transposed ones of the backward pass to
    // the input; whether the tiled product adds to what y holds.
    k_wp: u32, has_bias: u32, v_filters: u32, flipped: u32,
    accumulate: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

// Where x[.., iy, ix] is in the input plane that starts at `plane`, clamped into the plane,
// and whether (iy, ix) is inside it: outside is the zero padding, which every kernel reads as
//   select(0.0, x[at.index], at.inside)
struct Padded { index: u32, inside: bool }

fn padded(plane: u32, iy: i32, ix: i32) -> Padded {
    let inside = iy >= 0 && iy < i32(P.in_h) && ix >= 0 && ix < i32(P.in_w);
    let row = u32(clamp(iy, 0, i32(P.in_h) - 1));
    let column = u32(clamp(ix, 0, i32(P.in_w) - 1));
    return Padded(plane + row * P.in_w + column, inside);
}
