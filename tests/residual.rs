//! Residual networks as files and built-ins: blocks in TOML and JSON, errors that name the
//! file, the block and the layer, Fixup's ResNets (parameters as the reference PyTorch code
//! counts them, Fixup's initialisation) and the tensor names a model file gives them.

use std::path::Path;

use newton_wgpu::loss::Loss;
use newton_wgpu::model::Model;
use newton_wgpu::nn::{self, parse_network, LayerSpec, Network, NetworkFormat, PlannedLayer, Shape};

const TOML: &str = r#"
[[layers]]
type = "conv"
kernel = 3
channels = 4
padding = 1
bias = false
[[layers]]
type = "residual"
body = [
    { type = "bias" },
    { type = "conv", kernel = 3, channels = 4, padding = 1, gain = 0.5 },
    { type = "relu" },
    { type = "scale" },
]
[[layers]]
type = "residual"
body = [{ type = "conv", kernel = 3, channels = 8, stride = 2, padding = 1, bias = false }]
shortcut = [{ type = "subsample", stride = 2, channels = 8 }]
[[layers]]
type = "global_avgpool"
[[layers]]
type = "dense"
units = 3
gain = 0
"#;

const JSON: &str = r#"{"layers": [
  {"type": "conv", "kernel": 3, "channels": 4, "padding": 1, "bias": false},
  {"type": "residual", "body": [{"type": "bias"},
     {"type": "conv", "kernel": 3, "channels": 4, "padding": 1, "gain": 0.5},
     {"type": "relu"}, {"type": "scale"}]},
  {"type": "residual",
   "body": [{"type": "conv", "kernel": 3, "channels": 8, "stride": 2, "padding": 1, "bias": false}],
   "shortcut": [{"type": "subsample", "stride": 2, "channels": 8}]},
  {"type": "global_avgpool"}, {"type": "dense", "units": 3, "gain": 0}]}"#;

#[test]
fn residual_blocks_read_the_same_from_toml_and_json_and_unfold_into_a_graph() {
    let from_toml = parse_network(TOML, NetworkFormat::Toml, Path::new("net.toml")).unwrap();
    let from_json = parse_network(JSON, NetworkFormat::Json, Path::new("net.json")).unwrap();
    assert_eq!(from_toml, from_json);
    let network = Network::new(Shape::new(2, 6, 6), &from_toml).unwrap();
    let kinds: Vec<&str> = network.layers().iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds,
        ["conv", "bias", "conv", "relu", "scale", "add", "conv", "subsample", "add", "avgpool", "dense"]
    );
    // The first block's sum reads its body's end and the block's input; the second block's
    // body and shortcut both read the first block's sum.
    assert_eq!(network.sources(5), &[5, 1]);
    assert_eq!(network.sources(6), &[6]);
    assert_eq!(network.sources(7), &[6]);
    assert_eq!(network.sources(8), &[7, 8]);
    assert_eq!(network.layers()[8].output(), Shape::new(8, 3, 3));
    // θ: conv 72 (no bias), bias 1, conv 144 + 4, scale 1, conv 288 (no bias), dense 24 + 3.
    assert_eq!(network.param_count(), 72 + 1 + 148 + 1 + 288 + 27);
    let theta = network.init_params(3);
    let PlannedLayer::Scale { offset, .. } = network.layers()[4] else { panic!("layer 5 is the scale") };
    assert_eq!(theta[offset], 1.0, "a scale starts at 1");
    assert!(theta[network.param_count() - 27..].iter().all(|&w| w == 0.0), "gain 0 starts at zero");
    assert_eq!(network.path(2).name(), "layers.1.body.1");
    assert_eq!(network.path(7).name(), "layers.2.shortcut.0");
    assert_eq!(network.path(7).to_string(), "layer 3, shortcut layer 1");
}

#[test]
fn bad_blocks_name_the_file_the_block_and_the_layer() {
    let path = Path::new("res.toml");
    let parse = |text: &str| parse_network(text, NetworkFormat::Toml, path);
    let cases: [(&str, &[&str]); 5] = [
        (
            "[[layers]]\ntype = \"residual\"\nbody = [{ type = \"conv\", kernel = 3 }]\n",
            &["res.toml", "layer 1, body layer 1 (conv)", "missing field `channels`"],
        ),
        (
            "[[layers]]\ntype = \"residual\"\nbody = [{ type = \"relu\" }]\nshortcut = [{ type = \"bn\" }]\n",
            &["res.toml", "layer 1, shortcut layer 1", "batch normalisation", "independent"],
        ),
        ("[[layers]]\ntype = \"residual\"\n", &["layer 1 (residual)", "missing field `body`"]),
        ("[[layers]]\ntype = \"bias\"\nunits = 2\n", &["layer 1 (bias)", "`units` does not apply"]),
        (
            "[[layers]]\ntype = \"subsample\"\nstride = 2\n",
            &["layer 1 (subsample)", "missing field `channels`"],
        ),
    ];
    for (text, needles) in cases {
        let message = parse(text).unwrap_err().to_string();
        for needle in needles {
            assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        }
    }
    // Shapes are checked when the network is built, naming the block.
    let shape = Shape::new(2, 6, 6);
    let build = |text: &str| Network::new(shape, &parse(text).unwrap()).unwrap_err().to_string();
    let mismatch =
        build("[[layers]]\ntype = \"residual\"\nbody = [{ type = \"conv\", kernel = 3, channels = 5, padding = 1 }]\n");
    assert!(
        mismatch.contains("layer 1 (residual)") && mismatch.contains("5×6×6") && mismatch.contains("2×6×6"),
        "{mismatch}"
    );
    let empty = build("[[layers]]\ntype = \"residual\"\nbody = []\n");
    assert!(empty.contains("layer 1 (residual)") && empty.contains("no layers"), "{empty}");
    let affine = build("[[layers]]\ntype = \"affine\"\nscale = [1.0]\nshift = [0.0, 0.0]\n");
    assert!(
        affine.contains("layer 1 (affine)")
            && affine.contains("`scale` holds 1 values")
            && affine.contains(": 2"),
        "{affine}"
    );
    let narrow = build("[[layers]]\ntype = \"subsample\"\nstride = 2\nchannels = 1\n");
    assert!(
        narrow.contains("layer 1 (subsample)") && narrow.contains("fewer than the input's 2"),
        "{narrow}"
    );
    let gain = build("[[layers]]\ntype = \"dense\"\nunits = 2\ngain = -1.0\n");
    assert!(gain.contains("layer 1 (dense)") && gain.contains("`gain` is -1"), "{gain}");
    let inner = build(
        "[[layers]]\ntype = \"residual\"\nbody = [{ type = \"relu\" }, { type = \"maxpool\", size = 9 }]\n",
    );
    assert!(inner.contains("layer 1, body layer 2 (maxpool)") && inner.contains("does not fit"), "{inner}");
}

/// Blocks nested past the limit are refused by the file reader, in TOML and JSON alike, before
/// any recursion deep enough to matter.
#[test]
fn deeply_nested_blocks_are_refused() {
    let depth = nn::MAX_DEPTH + 2;
    let mut json = String::from("{\"type\": \"relu\"}");
    for _ in 0..depth {
        json = format!("{{\"type\": \"residual\", \"body\": [{json}]}}");
    }
    let message =
        parse_network(&format!("{{\"layers\": [{json}]}}"), NetworkFormat::Json, Path::new("deep.json"))
            .unwrap_err()
            .to_string();
    assert!(message.contains("deep.json") && message.contains("nest more than"), "{message}");
    let mut toml = String::from("{ type = \"relu\" }");
    for _ in 0..depth {
        toml = format!("{{ type = \"residual\", body = [{toml}] }}");
    }
    let message = parse_network(&format!("layers = [{toml}]\n"), NetworkFormat::Toml, Path::new("deep.toml"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("deep.toml") && message.contains("nest more than"), "{message}");
}

fn shipped(name: &str) -> Vec<LayerSpec> {
    let path = format!("{}/examples/networks/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    nn::load_network_file(Path::new(&path)).unwrap()
}

/// Fixup's ResNet-8 and ResNet-20: the built-ins are the shipped files, with the parameter
/// counts of the reference PyTorch code (hongyi-zhang/Fixup, cifar/models/fixup_resnet_cifar.py:
/// 74,827 and 268,393 on CIFAR-10), and start as Fixup does.
#[test]
fn fixup_resnets_are_the_shipped_files_with_fixups_parameters_and_initialisation() {
    let cifar = Shape::new(3, 32, 32);
    for (name, blocks, params) in [("resnet8", 1, 74_827), ("resnet20", 3, 268_393)] {
        let built = nn::builtin(name, cifar, 10).unwrap().unwrap();
        assert_eq!(built.specs(), &shipped(name)[..], "{name}");
        assert_eq!(built.param_count(), params, "{name}");
        assert_eq!(built.outputs(), 10);
        let theta = built.init_params(5);
        let convs: Vec<_> = built.conv_geometries().collect();
        // Stem, then two per block, then the dense layer.
        assert_eq!(convs.len(), 1 + 2 * 3 * blocks + 1);
        let depth = (3 * blocks) as f64;
        for (i, g) in convs.iter().enumerate() {
            let weights = &theta[g.weight_offset..g.bias_offset];
            let std =
                (weights.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / weights.len() as f64).sqrt();
            let expected = match i {
                0 => (2.0 / g.fan_in() as f64).sqrt(),
                _ if i == convs.len() - 1 => 0.0,
                _ if i % 2 == 0 => 0.0,
                // Fixup: He's by fan-out, times L^(-1/2).
                _ => (2.0 / (g.output.channels * 9) as f64).sqrt() / depth.sqrt(),
            };
            // At least 432 weights each: the sample deviation is within 10% of the true one.
            assert!((std - expected).abs() <= 0.1 * expected, "{name} conv {i}: std {std}, Fixup {expected}");
        }
        for layer in built.layers() {
            match layer {
                PlannedLayer::Scale { offset, .. } => assert_eq!(theta[*offset], 1.0),
                PlannedLayer::Bias { offset, .. } => assert_eq!(theta[*offset], 0.0),
                _ => {}
            }
        }
    }
    // The bundled digits fit as they are: 28×28 halves to 14×14 and 7×7.
    let digits = nn::resnet8(Shape::new(1, 28, 28), 10).unwrap();
    assert_eq!(digits.layers().iter().rev().nth(2).unwrap().output(), Shape::new(64, 1, 1));
}

/// A model of resnet8 names its tensors by their place (`layers.{i}.body.{j}.weight`), scalars
/// as [1], convolutions without bias have no `bias` tensor, and the file reads back equal.
#[test]
fn a_resnet_model_names_its_tensors_by_place_and_reads_back() {
    let network = nn::resnet8(Shape::new(3, 32, 32), 10).unwrap();
    let model = Model { theta: network.init_params(2), network, normalizer: None, loss: Loss::CrossEntropy };
    let tensors = model.tensors();
    let shape_of = |name: &str| {
        tensors.iter().find(|(n, ..)| n == name).map(|(_, shape, _)| shape.clone()).unwrap_or_else(|| {
            panic!("no tensor {name} in {:?}", tensors.iter().map(|t| &t.0).collect::<Vec<_>>())
        })
    };
    assert_eq!(shape_of("layers.0.weight"), [16, 3, 3, 3]);
    assert_eq!(shape_of("layers.1.bias"), [1]);
    assert_eq!(shape_of("layers.3.body.1.weight"), [16, 16, 3, 3]);
    assert_eq!(shape_of("layers.3.body.6.scale"), [1]);
    assert_eq!(shape_of("layers.6.body.0.weight"), [32, 16, 3, 3]);
    assert_eq!(shape_of("layers.13.weight"), [10, 64]);
    assert!(!tensors.iter().any(|(n, ..)| n == "layers.0.bias"), "a convolution without bias has none");
    assert_eq!(tensors.iter().map(|(_, _, v)| v.len()).sum::<usize>(), model.network.param_count());
    let bytes = model.to_bytes().unwrap();
    let read = Model::from_bytes(Path::new("resnet8.safetensors"), &bytes).unwrap();
    assert_eq!(read.value, model);
}
