//! Networks: built-in shapes, network files, shape checks and initialisation.

mod common;

use std::path::Path;

use newton_wgpu::data::Dataset;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{
    self, cnn4, cnn7, parse_network, LayerPath, LayerSpec, Network, NetworkError, NetworkFormat, Shape,
};
use newton_wgpu::objective::Objective;
use newton_wgpu::Error;

#[test]
fn builtin_networks_have_the_papers_shapes() {
    let mnist = cnn4(Shape::new(1, 28, 28), 10).unwrap();
    assert_eq!(mnist.layers().last().unwrap().input(), Shape::new(64, 3, 3));
    // 5·5·1·32+32, 3·3·32·64+64, 3·3·64·64+64, 576·10+10
    assert_eq!(mnist.param_count(), 832 + 18_496 + 36_928 + 5_770);
    let cifar = cnn4(Shape::new(3, 32, 32), 10).unwrap();
    assert_eq!(cifar.layers().last().unwrap().input(), Shape::new(64, 4, 4));
    assert_eq!(cifar.param_count(), 2_432 + 18_496 + 36_928 + 10_250);
    let deep = cnn7(Shape::new(3, 32, 32), 10).unwrap();
    assert_eq!(deep.conv_geometries().count(), 7);
    assert_eq!(deep.outputs(), 10);
}

const TOML: &str = r#"
[[layers]]
type = "conv"
kernel = 3
channels = 4
stride = 2
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "maxpool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 10
"#;

const JSON: &str = r#"{"layers": [
  {"type": "conv", "kernel": 3, "channels": 4, "stride": 2, "padding": 1},
  {"type": "relu"}, {"type": "maxpool", "size": 2}, {"type": "flatten"},
  {"type": "dense", "units": 10}]}"#;

#[test]
fn toml_and_json_files_describe_the_same_network() {
    let from_toml = parse_network(TOML, NetworkFormat::Toml, Path::new("net.toml")).unwrap();
    let from_json = parse_network(JSON, NetworkFormat::Json, Path::new("net.json")).unwrap();
    assert_eq!(from_toml, from_json);
    assert_eq!(from_toml[0], LayerSpec::conv(3, 4, 2, 1));
    assert_eq!(from_toml[2], LayerSpec::MaxPool { size: 2, stride: None });
    let network = Network::new(Shape::new(1, 28, 28), &from_toml).unwrap();
    assert_eq!(network.layers()[2].output(), Shape::new(4, 7, 7));
    assert_eq!(network.outputs(), 10);
    let shipped = nn::load_network_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/networks/small.toml"
    )));
    assert_eq!(Network::new(Shape::new(1, 28, 28), &shipped.unwrap()).unwrap().outputs(), 10);
}

#[test]
fn bad_network_files_name_the_file_and_the_field() {
    let path = Path::new("mine.toml");
    let cases: [(&str, &[&str]); 5] = [
        (
            "[[layers]]\ntype = \"batchnorm\"\n",
            &["mine.toml", "layer 1", "batch normalisation", "independent samples", "without it"],
        ),
        (
            "[[layers]]\ntype = \"pool\"\nsize = 2\n",
            &["mine.toml", "layer 1", "unknown type \"pool\"", "maxpool"],
        ),
        (
            "[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"conv\"\nkernel = 3\n",
            &["layer 2 (conv)", "missing field `channels`"],
        ),
        ("[[layers]]\ntype = \"dense\"\nunits = -2\n", &["mine.toml", "layers[0].units", "expected usize"]),
        ("[[layers]]\ntype = \"relu\"\nsize = 3\n", &["layer 1 (relu)", "field `size` does not apply"]),
    ];
    for (text, needles) in cases {
        let message = parse_network(text, NetworkFormat::Toml, path).unwrap_err().to_string();
        for needle in needles {
            assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        }
    }
    let message =
        parse_network("{\"layers\": [{\"type\": \"conv\", \"kernel\": \"3\"}]}", NetworkFormat::Json, path)
            .unwrap_err()
            .to_string();
    assert!(message.contains("layers[0].kernel") && message.contains("expected usize"), "{message}");
    let message = nn::load_network_file(Path::new("net.yaml")).unwrap_err().to_string();
    assert!(message.contains("net.yaml") && message.contains(".toml or .json"), "{message}");
    let message = nn::load_network_file(Path::new("/no/such/net.toml")).unwrap_err().to_string();
    assert!(message.contains("/no/such/net.toml"), "{message}");
}

#[test]
fn shapes_the_network_cannot_take_are_refused() {
    let conv = |kernel, padding| LayerSpec::conv(kernel, 2, 1, padding);
    let error = Network::new(Shape::new(1, 3, 5), &[conv(5, 0)]).unwrap_err();
    assert!(
        matches!(&error, NetworkError::WindowTooLarge { layer, window: 5, .. } if *layer == LayerPath::top(0)),
        "{error}"
    );
    assert!(error.to_string().contains("1×3×5"));
    let error =
        Network::new(Shape::new(1, 4, 4), &[LayerSpec::MaxPool { size: 2, stride: Some(0) }]).unwrap_err();
    assert_eq!(error, NetworkError::ZeroField { layer: LayerPath::top(0), kind: "maxpool", field: "stride" });
    assert_eq!(Network::new(Shape::new(1, 4, 4), &[]).unwrap_err(), NetworkError::Empty);

    // Data whose samples do not fit the network is refused before anything runs.
    let gpu = common::gpu();
    let network = cnn4(Shape::new(1, 28, 28), 10).unwrap();
    let theta = gpu.upload(&network.init_params(0), "θ").unwrap();
    let problem = newton_wgpu::Problem::new(network, Loss::SquaredError, 0.01).unwrap();
    let mut objective = Objective::new(&common::execution().with_bsize(4), &problem).unwrap();
    let wrong = Dataset::new(Shape::new(1, 3, 5), 10, vec![0.0; 30], vec![1, 2], "wrong".as_ref()).unwrap();
    match objective.value(&wrong, &theta) {
        Err(Error::Network(NetworkError::InputShape { expected, found })) => {
            assert_eq!((expected, found), (Shape::new(1, 28, 28), Shape::new(1, 3, 5)))
        }
        other => panic!("expected an input-shape error, got {other:?}"),
    }
    let classes = Dataset::new(Shape::new(1, 28, 28), 3, vec![0.0; 784], vec![1], "three".as_ref()).unwrap();
    assert!(matches!(objective.value(&classes, &theta), Err(Error::Network(NetworkError::Outputs { .. }))));
}

#[test]
fn he_initialisation_is_seeded_and_scaled_by_fan_in() {
    let network = cnn4(Shape::new(1, 28, 28), 10).unwrap();
    let theta = network.init_params(42);
    assert_eq!(theta, network.init_params(42));
    assert_ne!(theta, network.init_params(43));
    for g in network.conv_geometries() {
        let weights = &theta[g.weight_offset..g.bias_offset];
        let variance = weights.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / weights.len() as f64;
        let want = 2.0 / g.fan_in() as f64;
        // The sample variance of k normals is within 5·sqrt(2/k) of the truth almost surely.
        let slack = 5.0 * (2.0 / weights.len() as f64).sqrt();
        assert!(
            (variance / want - 1.0).abs() < slack,
            "variance {variance} vs {want} (fan-in {})",
            g.fan_in()
        );
        assert!(theta[g.bias_offset..g.bias_offset + g.output.channels].iter().all(|&b| b == 0.0));
    }
}

#[test]
fn an_adapter_name_that_matches_nothing_lists_the_adapters() {
    let options = newton_wgpu::gpu::GpuOptions {
        backends: wgpu::Backends::all(),
        adapter_name: Some("no-such-gpu".into()),
        ..Default::default()
    };
    let message =
        newton_wgpu::gpu::Gpu::with_options(&options).err().expect("no adapter is called that").to_string();
    assert!(message.contains("no-such-gpu") && message.contains("available"), "{message}");
    assert!(message.contains(&common::gpu().adapter().name), "{message} should list the adapter in use");
}

/// One rank per GPU: the index counts the adapters of the preferred adapter's backend only
/// (the same GPU seen through Vulkan and GL is one GPU), modulo their number.
#[test]
fn an_adapter_index_counts_the_adapters_of_one_backend() {
    use newton_wgpu::gpu::{Gpu, GpuOptions};
    let first =
        Gpu::with_options(&GpuOptions { backends: wgpu::Backends::all(), ..Default::default() }).unwrap();
    let first = first.adapter().clone();
    let instance = wgpu::Instance::default();
    let same_backend = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .filter(|a| a.get_info().backend == first.backend)
        .count();
    for index in [1, same_backend, 7] {
        let options =
            GpuOptions { backends: wgpu::Backends::all(), adapter_index: Some(index), ..Default::default() };
        let chosen = Gpu::with_options(&options).unwrap();
        assert_eq!(chosen.adapter().backend, first.backend, "index {index} left the preferred backend");
        if index % same_backend == 0 {
            assert_eq!(chosen.adapter().name, first.name, "index {index} of {same_backend}");
        }
    }
    // The program reads it from NEWTON_WGPU_ADAPTER_INDEX, and refuses what is not an index.
    let output = program().arg("info").env("NEWTON_WGPU_ADAPTER_INDEX", "first").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NEWTON_WGPU_ADAPTER_INDEX") && stderr.contains("expected 0, 1, 2"), "{stderr}");
}

/// The program, with kernel tuning off unless a test turns it on: runs whose logs are compared
/// must run the same kernels, and tuning would time them anew in every run.
fn program() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_newton-wgpu"));
    command.env("NEWTON_WGPU_TUNE", "off");
    command
}

/// VGG-11 without batch normalisation: the built-in and examples/networks/vgg11.toml are one
/// network, with torchvision's 9,220,480 convolution parameters and a dense layer of 512 inputs
/// at 32×32; smaller samples are refused by the fifth pool, naming it.
#[test]
fn vgg11_is_the_shipped_file_and_has_vgg11s_parameters() {
    let input = Shape::new(3, 32, 32);
    let built = nn::vgg11(input, 10).unwrap();
    let file = nn::load_network_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/networks/vgg11.toml"
    )));
    assert_eq!(built.specs(), &file.unwrap()[..]);
    let conv_params: usize = built.conv_geometries().filter(|g| g.kernel_h == 3).map(|g| g.params()).sum();
    assert_eq!(conv_params, 9_220_480);
    assert_eq!(built.param_count(), 9_220_480 + 512 * 10 + 10);
    let error = nn::vgg11(Shape::new(1, 28, 28), 10).unwrap_err().to_string();
    assert!(error.contains("layer 21 (maxpool)") && error.contains("does not fit"), "{error}");
}
