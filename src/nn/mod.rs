//! Networks: layers in order, shapes inferred and checked from the input shape, and every
//! parameter in one flat θ vector with per-layer offsets.

mod config;
pub mod device;
mod layer;
mod network;

pub use config::{load_network_file, parse_network, ConfigError, NetworkFormat};
pub use layer::{AvgPoolGeometry, ConvGeometry, LayerSpec, PoolGeometry, Shape, Smooth};
pub use network::{builtin, cnn4, cnn4_small, cnn7, vgg11, Network, NetworkError, PlannedLayer, BUILTIN};
