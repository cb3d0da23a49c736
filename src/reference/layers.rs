//! The layers of the reference, one function per pass.

use ndarray::{s, Array2, Array4, ArrayView2};

use crate::nn::{AvgPoolGeometry, ConvGeometry, PoolGeometry, Smooth, SubsampleGeometry};

/// W as a [out, in·kh·kw] matrix and b as a vector (zeros for a layer without), copied out of θ.
fn weights(g: &ConvGeometry, theta: &[f64]) -> (Array2<f64>, Vec<f64>) {
    let w = ArrayView2::from_shape((g.output.channels, g.fan_in()), &theta[g.weight_offset..g.bias_offset])
        .expect("θ holds the layer")
        .to_owned();
    let b = match g.bias {
        true => theta[g.bias_offset..g.bias_offset + g.output.channels].to_vec(),
        false => vec![0.0; g.output.channels],
    };
    (w, b)
}

/// im2col of one sample: [in·kh·kw, out_h·out_w], zero where the window hits padding.
fn im2col(g: &ConvGeometry, x: ndarray::ArrayView3<f64>) -> Array2<f64> {
    let (oh, ow) = (g.output.height, g.output.width);
    let mut cols = Array2::zeros((g.fan_in(), oh * ow));
    for c in 0..g.input.channels {
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                let row = (c * g.kernel_h + i) * g.kernel_w + j;
                for p in 0..oh {
                    for q in 0..ow {
                        let y = (p * g.stride + i) as isize - g.padding as isize;
                        let x_ = (q * g.stride + j) as isize - g.padding as isize;
                        if y >= 0 && x_ >= 0 && (y as usize) < g.input.height && (x_ as usize) < g.input.width
                        {
                            cols[[row, p * ow + q]] = x[[c, y as usize, x_ as usize]];
                        }
                    }
                }
            }
        }
    }
    cols
}

/// The inverse scatter of im2col: adds each column entry back to its input position.
fn col2im(g: &ConvGeometry, cols: &Array2<f64>, dx: &mut ndarray::ArrayViewMut3<f64>) {
    let (oh, ow) = (g.output.height, g.output.width);
    for c in 0..g.input.channels {
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                let row = (c * g.kernel_h + i) * g.kernel_w + j;
                for p in 0..oh {
                    for q in 0..ow {
                        let y = (p * g.stride + i) as isize - g.padding as isize;
                        let x_ = (q * g.stride + j) as isize - g.padding as isize;
                        if y >= 0 && x_ >= 0 && (y as usize) < g.input.height && (x_ as usize) < g.input.width
                        {
                            dx[[c, y as usize, x_ as usize]] += cols[[row, p * ow + q]];
                        }
                    }
                }
            }
        }
    }
}

/// y = W·im2col(x) + b, per sample.
pub fn conv_forward(g: &ConvGeometry, theta: &[f64], x: &Array4<f64>) -> Array4<f64> {
    let batch = x.shape()[0];
    let (w, b) = weights(g, theta);
    let (oc, oh, ow) = (g.output.channels, g.output.height, g.output.width);
    let mut y = Array4::zeros((batch, oc, oh, ow));
    for n in 0..batch {
        let product = w.dot(&im2col(g, x.slice(s![n, .., .., ..])));
        for o in 0..oc {
            for r in 0..oh * ow {
                y[[n, o, r / ow, r % ow]] = product[[o, r]] + b[o];
            }
        }
    }
    y
}

/// Adds ∂/∂(W, b) of ⟨dy, y⟩ into `grad` at the layer's offsets; returns ∂/∂x.
pub fn conv_backward(
    g: &ConvGeometry,
    theta: &[f64],
    x: &Array4<f64>,
    dy: &Array4<f64>,
    grad: &mut [f64],
) -> Array4<f64> {
    let batch = x.shape()[0];
    let (w, _) = weights(g, theta);
    let (oc, oh, ow) = (g.output.channels, g.output.height, g.output.width);
    let mut dx = Array4::zeros(x.raw_dim());
    for n in 0..batch {
        let dy_n = dy.slice(s![n, .., .., ..]).to_shape((oc, oh * ow)).expect("contiguous").to_owned();
        let cols = im2col(g, x.slice(s![n, .., .., ..]));
        let dw = dy_n.dot(&cols.t());
        for (k, v) in dw.iter().enumerate() {
            grad[g.weight_offset + k] += v;
        }
        for o in 0..g.biases() {
            grad[g.bias_offset + o] += dy_n.row(o).sum();
        }
        let dcols = w.t().dot(&dy_n);
        col2im(g, &dcols, &mut dx.slice_mut(s![n, .., .., ..]));
    }
    dx
}

pub fn relu_forward(x: &Array4<f64>) -> Array4<f64> {
    x.mapv(|v| v.max(0.0))
}

/// dx = dy where the output was positive.
pub fn relu_backward(y: &Array4<f64>, dy: &Array4<f64>) -> Array4<f64> {
    let mut dx = dy.clone();
    dx.zip_mut_with(y, |d, &v| {
        if v <= 0.0 {
            *d = 0.0
        }
    });
    dx
}

/// The input positions (h, w) of output (p, q)'s window that fall inside the input (the
/// padding holds zeros).
fn avgpool_window(g: &AvgPoolGeometry, p: usize, q: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let inside = |at: usize, padding: usize, len: usize| at.checked_sub(padding).filter(|&v| v < len);
    (0..g.kernel_h).flat_map(move |i| {
        (0..g.kernel_w).filter_map(move |j| {
            Some((
                inside(p * g.stride + i, g.padding, g.input.height)?,
                inside(q * g.stride + j, g.padding, g.input.width)?,
            ))
        })
    })
}

/// The mean of each window, zero padding counted (every window divides by its area).
pub fn avgpool_forward(g: &AvgPoolGeometry, x: &Array4<f64>) -> Array4<f64> {
    let (batch, area, out) = (x.shape()[0], (g.kernel_h * g.kernel_w) as f64, g.output);
    Array4::from_shape_fn((batch, out.channels, out.height, out.width), |(n, c, p, q)| {
        avgpool_window(g, p, q).map(|(h, w)| x[[n, c, h, w]]).sum::<f64>() / area
    })
}

/// dx: each window's dy / area, spread over the inputs it covers.
pub fn avgpool_backward(g: &AvgPoolGeometry, dy: &Array4<f64>) -> Array4<f64> {
    let (batch, area, inp) = (dy.shape()[0], (g.kernel_h * g.kernel_w) as f64, g.input);
    let mut dx = Array4::zeros((batch, inp.channels, inp.height, inp.width));
    for ((n, c, p, q), &d) in dy.indexed_iter() {
        for (h, w) in avgpool_window(g, p, q) {
            dx[[n, c, h, w]] += d / area;
        }
    }
    dx
}

/// tanh or the logistic function, elementwise.
pub fn smooth_forward(function: Smooth, x: &Array4<f64>) -> Array4<f64> {
    match function {
        Smooth::Tanh => x.mapv(f64::tanh),
        Smooth::Sigmoid => x.mapv(|v| 1.0 / (1.0 + (-v).exp())),
    }
}

/// dx = dy ⊙ f′, with f′ from the output y: 1 − y² for tanh, y(1 − y) for the sigmoid.
pub fn smooth_backward(function: Smooth, y: &Array4<f64>, dy: &Array4<f64>) -> Array4<f64> {
    let mut dx = dy.clone();
    dx.zip_mut_with(y, |d, &v| {
        *d *= match function {
            Smooth::Tanh => 1.0 - v * v,
            Smooth::Sigmoid => v * (1.0 - v),
        }
    });
    dx
}

/// Max over each window; the arg-max is the first largest value in row-major window order,
/// as a flat index h·w_in + w in the input plane.
pub fn maxpool_forward(g: &PoolGeometry, x: &Array4<f64>) -> (Array4<f64>, Array4<usize>) {
    let batch = x.shape()[0];
    let shape = (batch, g.output.channels, g.output.height, g.output.width);
    let (mut y, mut index) = (Array4::zeros(shape), Array4::zeros(shape));
    for ((n, c, p, q), out) in y.indexed_iter_mut() {
        let (mut best, mut at) = (f64::NEG_INFINITY, 0);
        for i in 0..g.size {
            for j in 0..g.size {
                let (h, w) = (p * g.stride + i, q * g.stride + j);
                if x[[n, c, h, w]] > best {
                    best = x[[n, c, h, w]];
                    at = h * g.input.width + w;
                }
            }
        }
        *out = best;
        index[[n, c, p, q]] = at;
    }
    (y, index)
}

/// Scatters dy to the arg-max positions (adding where windows overlap).
pub fn maxpool_backward(g: &PoolGeometry, index: &Array4<usize>, dy: &Array4<f64>) -> Array4<f64> {
    let batch = dy.shape()[0];
    let mut dx = Array4::zeros((batch, g.input.channels, g.input.height, g.input.width));
    for ((n, c, p, q), &d) in dy.indexed_iter() {
        let at = index[[n, c, p, q]];
        dx[[n, c, at / g.input.width, at % g.input.width]] += d;
    }
    dx
}

/// Every `stride`-th row and column of x, then zero channels up to the output's.
pub fn subsample_forward(g: &SubsampleGeometry, x: &Array4<f64>) -> Array4<f64> {
    let batch = x.shape()[0];
    let (oc, oh, ow) = (g.output.channels, g.output.height, g.output.width);
    Array4::from_shape_fn((batch, oc, oh, ow), |(n, c, p, q)| match c < g.input.channels {
        true => x[[n, c, p * g.stride, q * g.stride]],
        false => 0.0,
    })
}

/// dx: dy at the rows and columns the forward pass kept, zero elsewhere.
pub fn subsample_backward(g: &SubsampleGeometry, dy: &Array4<f64>) -> Array4<f64> {
    let batch = dy.shape()[0];
    let mut dx = Array4::zeros((batch, g.input.channels, g.input.height, g.input.width));
    for ((n, c, p, q), &d) in dy.indexed_iter() {
        if c < g.input.channels {
            dx[[n, c, p * g.stride, q * g.stride]] = d;
        }
    }
    dx
}

/// scale\[c\] · x (+ shift\[c\]) per channel c.
pub fn affine(x: &Array4<f64>, scale: &[f32], shift: Option<&[f32]>) -> Array4<f64> {
    let mut y = x.clone();
    for ((_, c, _, _), v) in y.indexed_iter_mut() {
        *v = *v * scale[c] as f64 + shift.map_or(0.0, |b| b[c] as f64);
    }
    y
}
