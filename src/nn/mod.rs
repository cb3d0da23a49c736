//! Networks: layers in order (residual blocks unfolded into a graph), shapes inferred and
//! checked from the input shape, and every parameter in one flat θ vector with per-layer offsets.

mod config;
pub mod device;
mod layer;
mod network;

pub use config::{load_network_file, parse_network, ConfigError, NetworkFormat};
pub use layer::{AvgPoolGeometry, ConvGeometry, LayerSpec, PoolGeometry, Shape, Smooth, SubsampleGeometry};
pub use network::{
    builtin, cnn4, cnn4_small, cnn7, fixup_resnet, resnet20, resnet8, vgg11, Branch, LayerPath, Network,
    NetworkError, PlannedLayer, BUILTIN, MAX_DEPTH,
};
