//! Data augmentation: each sample is a crop of its zero-padded image, flipped or not; a draw is
//! a function of the seed, the draw's number and the sample's index alone; flips are refused
//! for digits; a run with augmentation resumed from its checkpoint equals an uninterrupted one.

mod common;

use std::process::Command;

use newton_wgpu::data::{Augment, Dataset, CROP_PADDING};
use newton_wgpu::nn::Shape;

/// Distinct values everywhere, so that a sample's crop and flip can be told from its pixels.
fn numbered(len: usize, shape: Shape) -> Dataset {
    let images = (0..len * shape.len()).map(|i| 1.0 + i as f32).collect();
    let labels = (0..len as u32).map(|i| i % 3).collect();
    let data = Dataset::new(shape, 3, images, labels, "numbered".as_ref()).unwrap();
    Dataset { mirror_invariant: true, ..data }
}

/// The (dy, dx, flip) that makes `out` from `image`, if any.
fn transform_of(shape: Shape, image: &[f32], out: &[f32]) -> Option<(usize, usize, bool)> {
    let p = CROP_PADDING;
    for dy in 0..=2 * p {
        for dx in 0..=2 * p {
            for flip in [false, true] {
                let matches = (0..shape.channels).all(|c| {
                    (0..shape.height).all(|y| {
                        (0..shape.width).all(|x| {
                            let at = if flip { shape.width - 1 - x } else { x };
                            let (r, q) = ((y + dy).checked_sub(p), (at + dx).checked_sub(p));
                            let want = match (r.filter(|&r| r < shape.height), q.filter(|&q| q < shape.width))
                            {
                                (Some(r), Some(q)) => image[(c * shape.height + r) * shape.width + q],
                                _ => 0.0,
                            };
                            out[(c * shape.height + y) * shape.width + x] == want
                        })
                    })
                });
                if matches {
                    return Some((dy, dx, flip));
                }
            }
        }
    }
    None
}

#[test]
fn each_sample_is_a_crop_of_its_padded_image_flipped_or_not() {
    let shape = Shape::new(2, 6, 5);
    let data = numbered(64, shape);
    let augment: Augment = "crop,flip".parse().unwrap();
    let copy = augment.apply(&data, 0, 7, 1);
    assert_eq!(copy.labels, data.labels);
    let mut seen = Vec::new();
    for i in 0..data.len() {
        let found = transform_of(shape, data.images_of(i..i + 1), copy.images_of(i..i + 1));
        seen.push(found.unwrap_or_else(|| panic!("sample {i} is no crop or flip of its image")));
    }
    // Over 64 samples, both flips and many offsets occur.
    assert!(seen.iter().any(|t| t.2) && seen.iter().any(|t| !t.2), "{seen:?}");
    let offsets: std::collections::BTreeSet<_> = seen.iter().map(|t| (t.0, t.1)).collect();
    assert!(offsets.len() >= 20, "{offsets:?}");
    // Crop alone never flips; flip alone never moves.
    let cropped = "crop".parse::<Augment>().unwrap().apply(&data, 0, 7, 1);
    let flipped = "flip".parse::<Augment>().unwrap().apply(&data, 0, 7, 1);
    for i in 0..data.len() {
        let image = data.images_of(i..i + 1);
        assert!(!transform_of(shape, image, cropped.images_of(i..i + 1)).unwrap().2);
        let (dy, dx, _) = transform_of(shape, image, flipped.images_of(i..i + 1)).unwrap();
        assert_eq!((dy, dx), (CROP_PADDING, CROP_PADDING));
    }
}

#[test]
fn a_draw_depends_on_the_seed_the_draw_and_the_index_alone() {
    let data = numbered(40, Shape::new(1, 8, 8));
    let augment = Augment { crop: true, flip: true };
    let whole = augment.apply(&data, 0, 3, 5);
    assert_eq!(whole, augment.apply(&data, 0, 3, 5), "the same draw repeats");
    // A mini-batch's copies are the whole set's, in any order.
    let members = [17, 2, 33, 2];
    assert_eq!(augment.select(&data, &members, 3, 5), whole.select(&members));
    assert_ne!(whole, augment.apply(&data, 0, 3, 6), "another draw");
    // A rank's shard (positions 13..29) draws each sample as the whole set does there.
    let shard = data.select(&(13..29).collect::<Vec<_>>());
    assert_eq!(augment.apply(&shard, 13, 3, 5), whole.select(&(13..29).collect::<Vec<_>>()));
    assert_ne!(augment.apply(&shard, 0, 3, 5), whole.select(&(13..29).collect::<Vec<_>>()));
    let at = newton_wgpu::data::gather_images_at(&shard, 13, &[4, 0], Some(draw(augment)));
    assert_eq!(at, whole.select(&[17, 13]).images);
    assert_ne!(whole, augment.apply(&data, 0, 4, 5), "another seed");
    assert_eq!(Augment::NONE.apply(&data, 0, 3, 5), data);
    assert_eq!("none".parse::<Augment>().unwrap(), Augment::NONE);
    assert_eq!("flip, crop".parse::<Augment>().unwrap().to_string(), "crop,flip");
    let error = "crop,rotate".parse::<Augment>().unwrap_err();
    assert!(error.contains("\"rotate\"") && error.contains("crop, flip"), "{error}");
}

fn draw(augment: Augment) -> newton_wgpu::data::AugmentDraw {
    newton_wgpu::data::AugmentDraw { augment, seed: 3, draw: 5 }
}

fn program() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_newton-wgpu"));
    command.env("NEWTON_WGPU_TUNE", "off");
    command
}

/// Digits are not mirror-invariant: a flip is refused, naming the option and why; a crop runs.
#[test]
fn flips_are_refused_for_digits() {
    let (split, _) = common::bundled_mnist(50);
    assert!(!split.train.mirror_invariant);
    let flip = Augment { crop: false, flip: true };
    assert!(flip.refusal(&split.train).unwrap().contains("digits"));
    assert!(Augment { crop: true, flip: false }.refusal(&split.train).is_none());
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let output = program()
        .args(["train", "--net", net, "--limit", "50", "--iters", "1", "--augment", "crop,flip"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--augment") && stderr.contains("flip changes"), "{stderr}");
}

/// Newton-CG, SGD and SGN with crops: a run of 2 iterations (epochs) equals one of 1 resumed
/// from its checkpoint for 1 more, record for record but the seconds; and augmentation changes
/// the run.
#[test]
fn an_augmented_run_resumed_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let records = |log: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(log).unwrap();
        let strip = |mut v: serde_json::Value| {
            let object = v.as_object_mut().unwrap();
            object.retain(|key, _| !key.ends_with("_s") && key != "seconds");
            v
        };
        text.lines().map(|l| strip(serde_json::from_str(l).unwrap())).collect()
    };
    for (optim, count) in [("newton", "--iters"), ("sgd", "--epochs"), ("sgn", "--epochs")] {
        let run = |name: &str, steps: &str, augment: &str, extra: &[&str]| {
            let log = dir.path().join(format!("{optim}-{name}.jsonl"));
            let output = program()
                .args(["train", "--optim", optim, "--net", net, "--limit", "120", "--batch", "40"])
                .args(["--sgn-batch", "40", count, steps, "--augment", augment, "--seed", "3"])
                .arg("--log-json")
                .arg(&log)
                .args(extra)
                .output()
                .unwrap();
            assert!(output.status.success(), "{optim} {name}: {}", String::from_utf8_lossy(&output.stderr));
            records(&log)
        };
        let checkpoint = dir.path().join(format!("{optim}.ckpt"));
        let checkpoint = checkpoint.to_str().unwrap();
        let straight = run("straight", "2", "crop", &[]);
        let first = run("first", "1", "crop", &["--checkpoint", checkpoint]);
        let resumed = run("resumed", "2", "crop", &["--resume", checkpoint]);
        let joined: Vec<_> = first.into_iter().chain(resumed).collect();
        assert_eq!(joined, straight, "{optim}");
        assert_ne!(run("plain", "2", "none", &[]), straight, "{optim}: augmentation changes nothing");
        // A checkpoint of an augmented run continues only an augmented one.
        let output = program()
            .args(["train", "--optim", optim, "--net", net, "--limit", "120", "--batch", "40"])
            .args(["--sgn-batch", "40", count, "2", "--seed", "3", "--resume", checkpoint])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--augment crop, this run --augment none"), "{stderr}");
    }
}
