//! newton-wgpu: train convolutional neural networks by subsampled Gauss-Newton Newton-CG on
//! the GPU, with WGSL compute shaders through wgpu (Vulkan, Metal, DX12, OpenGL, and software
//! GPUs such as Mesa's lavapipe).
//!
//! ```no_run
//! use newton_wgpu::{data, gpu::Gpu, loss::Loss, nn, objective::Objective, Execution, Problem};
//!
//! let gpu = Gpu::new()?;
//! let mut split = data::load_dir("data/mnist-sample".as_ref())?;
//! split.normalize();
//! let network = nn::cnn4(split.train.shape, split.train.classes)?;
//! let theta = gpu.upload(&network.init_params(0), "θ")?;
//! let grad = gpu.zeros::<f32>(network.param_count(), "∇f")?;
//! let problem = Problem::new(network, Loss::SquaredError, 0.01)?; // what is minimised
//! let execution = Execution::new(&gpu); // how: the kernels that suit the adapter, chunks of 1024
//! let mut objective = Objective::new(&execution, &problem)?;
//! let eval = objective.value_and_grad(&split.train, &theta, &grad)?;
//! println!("f = {}, |∇f| = {}", eval.f, eval.grad_norm);
//! # Ok::<(), newton_wgpu::Error>(())
//! ```

pub mod comm;
pub mod curvature;
pub mod data;
mod error;
pub mod execution;
pub mod gpu;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod nn;
pub mod objective;
pub mod optim;
pub mod output;
pub mod problem;
pub mod reference;
pub mod rules;
pub mod tune;

pub use error::Error;
pub use execution::{ConvKernel, ConvPlan, ConvStrategy, Execution};
pub use problem::Problem;
