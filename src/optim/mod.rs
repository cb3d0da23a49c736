//! Optimisers: subsampled Gauss-Newton Newton-CG (with CG on the device, Armijo line search
//! and Levenberg-Marquardt damping) and the SGD baseline, reporting to an [`Observer`].

pub mod cg;
pub mod newton;
mod observer;
pub mod sgd;

pub use observer::{EpochRecord, IterationRecord, Observer, Record};
