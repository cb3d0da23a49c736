//! newton-wgpu: train convolutional neural networks by subsampled Gauss-Newton Newton-CG on
//! the GPU, with WGSL compute shaders through wgpu (Vulkan, Metal, DX12, OpenGL, and software
//! GPUs such as Mesa's lavapipe).
//!
//! ```no_run
//! use newton_wgpu::{data, gpu::Gpu, loss::Loss, nn, objective::Objective};
//!
//! let gpu = Gpu::new()?;
//! let mut split = data::load_dir("data/mnist-sample".as_ref())?;
//! split.normalize();
//! let network = nn::cnn4(split.train.shape, split.train.classes)?;
//! let theta = gpu.upload(&network.init_params(0), "θ")?;
//! let grad = gpu.zeros::<f32>(network.param_count(), "∇f")?;
//! let mut objective = Objective::new(&gpu, network, Loss::SquaredError, 0.01, 1024)?;
//! let eval = objective.value_and_grad(&split.train, &theta, &grad)?;
//! println!("f = {}, |∇f| = {}", eval.f, eval.grad_norm);
//! # Ok::<(), newton_wgpu::Error>(())
//! ```

pub mod curvature;
pub mod data;
mod error;
pub mod gpu;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod nn;
pub mod objective;
pub mod optim;
pub mod output;
pub mod reference;

pub use error::Error;
