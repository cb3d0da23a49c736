//! A plain CPU implementation, in f64 with ndarray, of the forward pass, the losses, the
//! gradient, forward-mode Jv, Jᵀu and Gauss-Newton products: the oracle every GPU kernel is
//! tested against, and usable by callers.
//!
//! It is written independently of the shaders: convolutions go through im2col and a matrix
//! product, and back-propagation through col2im, where the GPU convolves directly.

mod layers;

use ndarray::{Array2, Array4, ArrayView2};

use crate::data::Dataset;
use crate::loss::Loss;
use crate::nn::{Network, PlannedLayer};

pub use layers::{
    affine, avgpool_backward, avgpool_forward, conv_backward, conv_forward, maxpool_backward,
    maxpool_forward, relu_backward, relu_forward, smooth_backward, smooth_forward, subsample_backward,
    subsample_forward,
};

/// Every layer's output of one forward pass, and the pooling arg-max (flat index in the plane).
pub struct Trace {
    /// `values[0]` is the input; `values[i + 1]` the output of layer i.
    pub values: Vec<Array4<f64>>,
    pub argmax: Vec<Option<Array4<usize>>>,
}

impl Trace {
    /// The network's outputs z, [batch, K].
    pub fn outputs(&self) -> Array2<f64> {
        let z = self.values.last().expect("a trace has the input at least");
        let batch = z.shape()[0];
        z.to_shape((batch, z.len() / batch.max(1))).expect("contiguous").to_owned()
    }
}

/// Samples as a [batch, c, h, w] array in f64.
pub fn batch_of(network: &Network, images: &[f32]) -> Array4<f64> {
    let s = network.input();
    let batch = images.len() / s.len();
    Array4::from_shape_vec((batch, s.channels, s.height, s.width), images.iter().map(|&v| v as f64).collect())
        .expect("images hold whole samples")
}

fn reshaped(x: &Array4<f64>, shape: crate::nn::Shape) -> Array4<f64> {
    let batch = x.shape()[0];
    x.to_shape((batch, shape.channels, shape.height, shape.width)).expect("contiguous").to_owned()
}

/// The forward pass of `network` with parameters `theta` on `x`.
pub fn forward(network: &Network, theta: &[f64], x: Array4<f64>) -> Trace {
    let mut values = vec![x];
    let mut argmax = Vec::new();
    for (i, layer) in network.layers().iter().enumerate() {
        let sources = network.sources(i);
        let input = &values[sources[0]];
        let (output, index) = match layer {
            PlannedLayer::Conv { geometry, .. } => (conv_forward(geometry, theta, input), None),
            PlannedLayer::Relu { .. } => (relu_forward(input), None),
            PlannedLayer::Smooth { function, .. } => (smooth_forward(*function, input), None),
            PlannedLayer::AvgPool(g) => (avgpool_forward(g, input), None),
            PlannedLayer::MaxPool(g) => {
                let (y, index) = maxpool_forward(g, input);
                (y, Some(index))
            }
            PlannedLayer::Flatten { output, .. } => (reshaped(input, *output), None),
            PlannedLayer::Add { .. } => (input + &values[sources[1]], None),
            PlannedLayer::Bias { offset, .. } => (input + theta[*offset], None),
            PlannedLayer::Scale { offset, .. } => (input * theta[*offset], None),
            PlannedLayer::Subsample(g) => (subsample_forward(g, input), None),
            PlannedLayer::Affine { scale, shift, .. } => (affine(input, scale, Some(shift)), None),
        };
        values.push(output);
        argmax.push(index);
    }
    Trace { values, argmax }
}

/// Adds `delta` to what `node` has gathered so far.
fn gather(deltas: &mut [Option<Array4<f64>>], node: usize, delta: Array4<f64>) {
    deltas[node] = Some(match deltas[node].take() {
        Some(sum) => sum + delta,
        None => delta,
    });
}

/// Back-propagates `dz` ([batch, K]) through the trace: returns (Jᵀ·dz summed over the batch,
/// the gradient with respect to the input). A node that several layers read gathers the sum
/// of their gradients.
pub fn vjp(network: &Network, theta: &[f64], trace: &Trace, dz: ArrayView2<f64>) -> (Vec<f64>, Array4<f64>) {
    let mut grad = vec![0.0; network.param_count()];
    let top = trace.values.last().expect("outputs present");
    let mut deltas: Vec<Option<Array4<f64>>> = vec![None; trace.values.len()];
    deltas[trace.values.len() - 1] =
        Some(dz.to_shape(top.raw_dim()).expect("dz matches the outputs").to_owned());
    for (i, layer) in network.layers().iter().enumerate().rev() {
        let sources = network.sources(i);
        let input = &trace.values[sources[0]];
        let output = &trace.values[i + 1];
        let delta = deltas[i + 1].take().unwrap_or_else(|| Array4::zeros(output.raw_dim()));
        let to_input = match layer {
            PlannedLayer::Conv { geometry, .. } => conv_backward(geometry, theta, input, &delta, &mut grad),
            PlannedLayer::Relu { .. } => relu_backward(output, &delta),
            PlannedLayer::Smooth { function, .. } => smooth_backward(*function, output, &delta),
            PlannedLayer::AvgPool(g) => avgpool_backward(g, &delta),
            PlannedLayer::MaxPool(g) => {
                maxpool_backward(g, trace.argmax[i].as_ref().expect("pool arg-max"), &delta)
            }
            PlannedLayer::Flatten { .. } => reshaped(&delta, layer.input()),
            PlannedLayer::Add { .. } => {
                gather(&mut deltas, sources[1], delta.clone());
                delta
            }
            PlannedLayer::Bias { offset, .. } => {
                grad[*offset] += delta.sum();
                delta
            }
            PlannedLayer::Scale { offset, .. } => {
                grad[*offset] += (&delta * input).sum();
                delta * theta[*offset]
            }
            PlannedLayer::Subsample(g) => subsample_backward(g, &delta),
            PlannedLayer::Affine { scale, .. } => affine(&delta, scale, None),
        };
        gather(&mut deltas, sources[0], to_input);
    }
    let input_grad = deltas[0].take().unwrap_or_else(|| Array4::zeros(trace.values[0].raw_dim()));
    (grad, input_grad)
}

/// Forward mode through the trace: J·v for every sample, [batch, K], with v in θ's layout.
/// Through a linear layer R(y) = W·R(x) + V_W·x + V_b; through ReLU and max-pool the
/// direction follows the stored mask and arg-max; through a scale R(y) = s·R(x) + v_s·x.
pub fn jvp(network: &Network, theta: &[f64], trace: &Trace, v: &[f64]) -> Array2<f64> {
    // W·R(x) without the bias: the same layer with θ's biases zeroed.
    let mut weights_only = theta.to_vec();
    for g in network.conv_geometries() {
        weights_only[g.bias_offset..g.bias_offset + g.biases()].fill(0.0);
    }
    let mut tangents = vec![Array4::zeros(trace.values[0].raw_dim())];
    for (i, layer) in network.layers().iter().enumerate() {
        let sources = network.sources(i);
        let (input, r) = (&trace.values[sources[0]], &tangents[sources[0]]);
        let output = &trace.values[i + 1];
        let r_out = match layer {
            PlannedLayer::Conv { geometry, .. } => {
                conv_forward(geometry, &weights_only, r) + conv_forward(geometry, v, input)
            }
            PlannedLayer::Relu { .. } => relu_backward(output, r),
            PlannedLayer::Smooth { function, .. } => smooth_backward(*function, output, r),
            PlannedLayer::AvgPool(g) => avgpool_forward(g, r),
            PlannedLayer::MaxPool(g) => {
                let index = trace.argmax[i].as_ref().expect("pool arg-max");
                Array4::from_shape_fn(index.raw_dim(), |(n, c, p, q)| {
                    let at = index[[n, c, p, q]];
                    r[[n, c, at / g.input.width, at % g.input.width]]
                })
            }
            PlannedLayer::Flatten { output, .. } => reshaped(r, *output),
            PlannedLayer::Add { .. } => r + &tangents[sources[1]],
            PlannedLayer::Bias { offset, .. } => r + v[*offset],
            PlannedLayer::Scale { offset, .. } => r * theta[*offset] + input * v[*offset],
            PlannedLayer::Subsample(g) => subsample_forward(g, r),
            PlannedLayer::Affine { scale, .. } => affine(r, scale, None),
        };
        tangents.push(r_out);
    }
    let r = tangents.pop().expect("the network has layers");
    let batch = r.shape()[0];
    r.to_shape((batch, network.outputs())).expect("contiguous").to_owned()
}

/// B·u per sample, with B = ∂²ξ/∂z² at the outputs z: 2u for squared error,
/// p ⊙ u − p·(pᵀu) for softmax cross-entropy.
pub fn loss_hessian_product(loss: Loss, z: ArrayView2<f64>, u: ArrayView2<f64>) -> Array2<f64> {
    match loss {
        Loss::SquaredError => u.mapv(|x| 2.0 * x),
        Loss::CrossEntropy => {
            let mut bu = Array2::zeros(u.raw_dim());
            for n in 0..z.nrows() {
                let top = z.row(n).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let e = z.row(n).mapv(|v| (v - top).exp());
                let p = &e / e.sum();
                let pu = p.dot(&u.row(n));
                bu.row_mut(n).assign(&(&p * &(&u.row(n) - pu)));
            }
            bu
        }
    }
}

/// (G_S + λI)·v = (λ + 1/(C·l))·v + (1/|S|) Σ_{i∈S} J_iᵀ B_i J_i v, for the subsample whose
/// samples are `images`; `l` is the size of the whole training set.
#[allow(clippy::too_many_arguments)]
pub fn gauss_newton_product(
    network: &Network,
    loss: Loss,
    c: f64,
    l: usize,
    lambda: f64,
    theta: &[f64],
    images: &[f32],
    v: &[f64],
) -> Vec<f64> {
    let trace = forward(network, theta, batch_of(network, images));
    let s = trace.values[0].shape()[0] as f64;
    let jv = jvp(network, theta, &trace, v);
    let bjv = loss_hessian_product(loss, trace.outputs().view(), jv.view());
    let (jt_bjv, _) = vjp(network, theta, &trace, bjv.view());
    let damping = lambda + 1.0 / (c * l as f64);
    v.iter().zip(jt_bjv).map(|(vi, g)| damping * vi + g / s).collect()
}

/// Per-sample losses and ∂ξ/∂z for outputs z ([batch, K]).
pub fn loss_value_and_grad(loss: Loss, z: ArrayView2<f64>, labels: &[u32]) -> (Vec<f64>, Array2<f64>) {
    let mut values = Vec::with_capacity(labels.len());
    let mut dz = Array2::zeros(z.raw_dim());
    for (n, &label) in labels.iter().enumerate() {
        let row = z.row(n);
        let y = |k: usize| if k == label as usize { 1.0 } else { 0.0 };
        match loss {
            Loss::SquaredError => {
                values.push(row.iter().enumerate().map(|(k, &v)| (v - y(k)).powi(2)).sum());
                for (k, &v) in row.iter().enumerate() {
                    dz[[n, k]] = 2.0 * (v - y(k));
                }
            }
            Loss::CrossEntropy => {
                let top = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let log_sum = row.iter().map(|&v| (v - top).exp()).sum::<f64>().ln() + top;
                values.push(log_sum - row[label as usize]);
                for (k, &v) in row.iter().enumerate() {
                    dz[[n, k]] = (v - log_sum).exp() - y(k);
                }
            }
        }
    }
    (values, dz)
}

/// f(θ) and ∇f(θ) over `data`, as [`crate::problem`] defines them.
pub fn objective(network: &Network, loss: Loss, c: f64, theta: &[f64], data: &Dataset) -> (f64, Vec<f64>) {
    let l = data.len() as f64;
    let trace = forward(network, theta, batch_of(network, &data.images));
    let (values, dz) = loss_value_and_grad(loss, trace.outputs().view(), &data.labels);
    let (data_grad, _) = vjp(network, theta, &trace, dz.view());
    let theta_sq: f64 = theta.iter().map(|t| t * t).sum();
    let f = theta_sq / (2.0 * c * l) + values.iter().sum::<f64>() / l;
    let grad = theta.iter().zip(data_grad).map(|(t, g)| t / (c * l) + g / l).collect();
    (f, grad)
}
