//! The newton-wgpu program end to end on a small problem: `train` with a validation set
//! keeps the best model, which `predict` then loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use newton_wgpu::model::Model;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> String {
    let output = program().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "newton-wgpu {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn train_with_a_validation_set_saves_the_best_model() {
    let dir = scratch("program-validation");
    let (model, log) = (dir.join("best.safetensors"), dir.join("log.jsonl"));
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let stdout = run(&[
        "train",
        "--net",
        net,
        "--loss",
        "ce",
        "--limit",
        "400",
        "--validation",
        "0.25",
        "--optim",
        "sgd",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "--save",
        model.to_str().unwrap(),
        "--log-json",
        log.to_str().unwrap(),
    ]);
    assert!(stdout.contains("300 training, 100 validation and 2000 test samples"), "{stdout}");
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // θ0's record (epoch 0), then one per epoch.
    assert_eq!(records.len(), 5);
    assert!(records.iter().enumerate().all(|(i, r)| r["epoch"] == i), "{records:?}");
    assert!(records[0]["running_loss"].is_null() && records[0]["elapsed_s"] == 0.0, "{:?}", records[0]);
    let accuracies: Vec<f64> = records.iter().map(|r| r["val_acc"].as_f64().unwrap()).collect();
    // The first epoch that reaches the best accuracy is the one kept.
    let best = accuracies.iter().copied().fold(f64::MIN, f64::max);
    let epoch = accuracies.iter().position(|&a| a == best).unwrap();
    let saved = format!("best validation accuracy, {:.2}% (after epoch {epoch})", 100.0 * best);
    assert!(stdout.contains(&saved), "expected {saved:?} in\n{stdout}");

    let loaded = Model::load(&model).unwrap();
    assert_eq!(loaded.theta.len(), loaded.network.param_count());
    let predicted = run(&["predict", "--model", model.to_str().unwrap()]);
    assert!(predicted.contains("accuracy"), "{predicted}");
}

/// Every setting out of range is refused before anything runs (no adapter is opened), with
/// exit status 2 and a message that names the option and the range; the same rule in every
/// command. A failure at run time exits with 1. No backtrace is printed, whatever
/// RUST_BACKTRACE says.
#[test]
fn settings_out_of_range_are_refused_before_anything_runs() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["train", "--validation", "1.5"], "--validation", "(0, 1)"),
        (&["compare", "--target", "95"], "--target", "(0, 1]"),
        (&["train", "--momentum", "1.5"], "--momentum", "[0, 1)"),
        (&["train", "--optim", "sgd", "--momentum", "-0.1"], "--momentum", "[0, 1)"),
        (&["train", "--decay", "-1"], "--decay", "≥ 0"),
        (&["train", "--grad-tol", "NaN"], "--grad-tol", "≥ 0"),
        (&["train", "--cg-check-every", "0"], "--cg-check-every", "from 1 to 256"),
        (&["train", "--cg-sums-per-product", "0"], "--cg-sums-per-product", "from 1 to 64"),
        (&["train", "--time-budget", "NaN"], "--time-budget", "seconds > 0"),
        (&["train", "--time-budget", "-3"], "--time-budget", "seconds > 0"),
        (&["train", "--time-budget", "1e300"], "--time-budget", "seconds > 0"),
        (&["train", "--gn-size", "9000"], "--gn-size", "number of training samples"),
        (&["train", "--lr", "0"], "--lr", "> 0"),
        (&["train", "--xi", "1"], "--xi", "(0, 1)"),
        (&["train", "--c", "0"], "--c", "> 0"),
        (&["train", "--bsize", "0"], "--bsize", "from 1 to 1073741824"),
        (&["train", "--limit", "0"], "--limit", "from 1 to 1073741824"),
        (&["compare", "--lr", "-1"], "--lr", "> 0"),
        (&["compare", "--momentum", "1"], "--momentum", "[0, 1)"),
        (&["eval", "--gn-size", "0"], "--gn-size", "number of training samples"),
        (&["predict", "--model", "m.safetensors", "--bsize", "0"], "--bsize", "from 1 to 1073741824"),
        (&["train", "--optim", "sgn", "--sgn-batch", "0"], "--sgn-batch", "from 1 to 1073741824"),
        (&["train", "--optim", "sgn", "--sgn-cg-steps", "0"], "--sgn-cg-steps", "from 1 to 1000000"),
        (&["train", "--sgn-batch", "100", "--sgn-gn-size", "101"], "--sgn-gn-size", "SGN mini-batch"),
        (&["train", "--sgn-lambda", "-1"], "--sgn-lambda", "from 0 to 1e20"),
        (&["train", "--lambda", "1e21"], "--lambda", "from 0 to 1e20"),
        (&["train", "--evals-per-epoch", "0"], "--evals-per-epoch", "from 1 to 10000"),
        (&["train", "--precondition", "--probes", "0"], "--probes", "from 1 to 1000"),
        (&["compare", "--tune-sgd", "0"], "--tune-sgd", "seconds > 0"),
        (&["compare", "--target", "0.95,1.5"], "--target", "(0, 1]"),
        (&["compare", "--methods", "sgn,newton,sgn"], "--methods", "named twice"),
    ];
    for (args, option, range) in cases {
        let output = program().args(*args).env("RUST_BACKTRACE", "1").output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(option) && stderr.contains(range), "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace") && !stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stdout.contains("adapter:"), "{args:?} opened the GPU first: {stdout}");
    }
    let output = program()
        .args(["predict", "--model", "no-such-model.safetensors"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-model.safetensors") && !stderr.contains("Stack backtrace"), "{stderr}");
}

/// Every count option has an upper bound (docs/command-line.md, "Settings and their bounds"), checked with
/// the others before the GPU opens: one past it is refused with exit 2, naming the option and
/// both bounds, alone or in the combinations that once multiplied (CG's steps per submit from
/// --cg-check-every and the step limit; every probe recorded into one program).
#[test]
fn every_count_option_is_bounded_before_the_gpu_opens() {
    const HUGE: &str = "18446744073709551615";
    let cases: &[(&[&str], &str, &str)] = &[
        (&["train", "--iters", "1000001"], "--iters", "from 0 to 1000000"),
        (&["train", "--optim", "sgd", "--epochs", "1000001"], "--epochs", "from 0 to 1000000"),
        (&["train", "--cg-max", "1000001"], "--cg-max", "from 1 to 1000000"),
        (&["train", "--cg-check-every", "257"], "--cg-check-every", "from 1 to 256"),
        (&["train", "--cg-sums-per-product", "65"], "--cg-sums-per-product", "from 1 to 64"),
        (
            &["train", "--optim", "sgn", "--cg-sums-per-product", HUGE],
            "--cg-sums-per-product",
            "from 1 to 64",
        ),
        (&["train", "--cg-check-every", HUGE, "--cg-max", HUGE], "--cg-max", "from 1 to 1000000"),
        (&["train", "--cg-check-every", HUGE, "--cg-max", "1000"], "--cg-check-every", "from 1 to 256"),
        (&["train", "--precondition", "--probes", "1001"], "--probes", "from 1 to 1000"),
        (&["train", "--precondition", "--probes", HUGE], "--probes", "from 1 to 1000"),
        (&["train", "--optim", "sgn", "--sgn-cg-steps", HUGE], "--sgn-cg-steps", "from 1 to 1000000"),
        (&["train", "--optim", "sgn", "--sgn-batch", HUGE], "--sgn-batch", "from 1 to 1073741824"),
        (&["train", "--optim", "sgd", "--batch", "1073741825"], "--batch", "from 1 to 1073741824"),
        (&["train", "--bsize", HUGE], "--bsize", "from 1 to 1073741824"),
        (&["train", "--limit", HUGE], "--limit", "from 1 to 1073741824"),
        (&["train", "--evals-per-epoch", "10001"], "--evals-per-epoch", "from 1 to 10000"),
        (&["compare", "--methods", "sgn", "--sgn-cg-steps", HUGE], "--sgn-cg-steps", "from 1 to 1000000"),
        (&["predict", "--model", "m.safetensors", "--bsize", HUGE], "--bsize", "from 1 to 1073741824"),
    ];
    for (args, option, range) in cases {
        let output = program().args(*args).output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(option) && stderr.contains(range), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stdout.contains("adapter:"), "{args:?} opened the GPU first: {stdout}");
    }
}

#[test]
fn outputs_that_are_special_files_are_refused_before_training() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("program-special-outputs");
    let fifo = dir.join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let report = dir.join("report");
    std::fs::create_dir(&report).unwrap();
    std::os::unix::fs::symlink(&fifo, report.join("summary.txt")).unwrap();
    let fifo_arg = fifo.to_str().unwrap();
    let cases: [(Vec<&str>, &Path); 4] = [
        (vec!["train", "--save", fifo_arg], &fifo),
        (vec!["train", "--checkpoint", fifo_arg], &fifo),
        (vec!["train", "--optim", "sgd", "--log-json", fifo_arg], &fifo),
        (vec!["compare", "--out", report.to_str().unwrap()], &report.join("summary.txt")),
    ];
    for (args, named) in cases {
        let output = program().args(&args).output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(&named.display().to_string()) && stderr.contains("FIFO"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("adapter:"), "{args:?} opened the GPU before refusing: {stdout}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }
    assert_eq!(std::fs::read_dir(&report).unwrap().count(), 1, "compare wrote into its report folder");
}

#[test]
fn the_convolution_kernels_are_chosen_by_environment_variable() {
    let info = |value: &str| program().arg("info").env("NEWTON_WGPU_CONV", value).output().unwrap();
    for kernels in ["windowed", "tiled", "tile4", "direct8x4"] {
        let output = info(kernels);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && stdout.contains(&format!("{kernels} kernels")), "{stdout}");
    }
    let output = info("fast");
    assert!(!output.status.success(), "NEWTON_WGPU_CONV=fast was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NEWTON_WGPU_CONV") && stderr.contains("windowed, tiled, tile4"), "{stderr}");
    let output = program().arg("info").env("NEWTON_WGPU_SHADER_CHECKS", "some").output().unwrap();
    assert!(!output.status.success(), "NEWTON_WGPU_SHADER_CHECKS=some was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NEWTON_WGPU_SHADER_CHECKS") && stderr.contains("all, declared or none"),
        "{stderr}"
    );
    // An unknown backend is named, with the ones there are, and exits with 2: never ignored,
    // never shown as wgpu's bit set.
    for value in ["vulkn", "vulkan,metl", ","] {
        let output = program().arg("info").env("WGPU_BACKEND", value).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "WGPU_BACKEND={value}: {stderr}");
        assert!(stderr.contains("WGPU_BACKEND") && stderr.contains("vulkan, metal, dx12, gl"), "{stderr}");
        assert!(!stderr.contains("Backends("), "{stderr}");
    }
}

#[test]
fn compare_races_any_methods_after_tuning_sgd_and_writes_logs_a_csv_charts_and_a_summary() {
    let dir = scratch("program-compare");
    let stdout = run(&[
        "compare",
        "--net",
        "cnn4-small",
        "--loss",
        "ce",
        "--limit",
        "300",
        "--methods",
        "newton,newton-pcg,sgn,sgd",
        "--iters",
        "2",
        "--epochs",
        "2",
        "--evals-per-epoch",
        "2",
        "--sgn-batch",
        "100",
        "--target",
        "0.2,0.5",
        "--tune-sgd",
        "0.5",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let log = |name: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (newton, pcg, sgn, sgd) =
        (log("newton.jsonl"), log("newton-pcg.jsonl"), log("sgn.jsonl"), log("sgd.jsonl"));
    // θ0's record, then one per iteration, or two per epoch (SGN: 3 mini-batches of 100 an
    // epoch, recorded after 2 and 3; SGD: 3 of at most 128); every curve starts at θ0, at 0 s.
    assert_eq!((newton.len(), pcg.len(), sgn.len(), sgd.len()), (3, 3, 5, 5));
    assert_eq!((&newton[0]["iter"], &newton[0]["elapsed_s"]), (&0.into(), &0.0.into()));
    assert_eq!((&sgd[0]["epoch"], &sgd[0]["elapsed_s"]), (&0.into(), &0.0.into()));
    for other in [&pcg, &sgn, &sgd] {
        assert_eq!(newton[0]["f"], other[0]["f"], "all start from the same θ0");
    }
    assert!(newton.iter().all(|r| r["iter"].is_u64() && r["cg_iters"].is_u64() && r["test_acc"].is_f64()));
    let steps: Vec<_> = sgn.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 2, 3, 5, 6]);
    // f on the training set at the ends of epochs; λ and the CG steps in every SGN record.
    let has_f: Vec<bool> = sgd.iter().map(|r| r["f"].is_f64()).collect();
    assert_eq!(has_f, [true, false, true, false, true], "{sgd:?}");
    assert!(sgn.iter().all(|r| r["lambda"].is_f64() && r["cg_iters"].is_u64() && r["test_acc"].is_f64()));
    assert!(sgd.iter().all(|r| r["epoch"].is_u64() && r["lambda"].is_null()));

    // SGD tuned over lr × momentum, and raced with the setting that reached 20% first (when
    // none did in its half second, the most accurate at the end, the last of equals).
    let mut fastest: Option<(f64, String)> = None;
    let mut most_accurate: Option<(f64, String)> = None;
    for momentum in ["0", "0.9"] {
        for lr in ["0.003", "0.01", "0.03", "0.1"] {
            let records = log(&format!("tune-sgd-lr{lr}-m{momentum}.jsonl"));
            let name = format!("SGD, tuned: lr {lr} μ {momentum}");
            let reached = records.iter().find(|r| r["test_acc"].as_f64().unwrap() >= 0.2);
            if let Some(t) = reached.map(|r| r["elapsed_s"].as_f64().unwrap()) {
                if fastest.as_ref().is_none_or(|(best, _)| t < *best) {
                    fastest = Some((t, name.clone()));
                }
            }
            let last = records.last().unwrap()["test_acc"].as_f64().unwrap();
            if most_accurate.as_ref().is_none_or(|(best, _)| last >= *best) {
                most_accurate = Some((last, name));
            }
        }
    }
    let (_, chosen) = fastest.or(most_accurate).unwrap();
    assert!(stdout.contains(&chosen), "expected {chosen:?} in\n{stdout}");

    let csv = std::fs::read_to_string(dir.join("records.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "run,method,index,f,test_acc,elapsed_s");
    let of = |run: &str| rows.iter().filter(|r| r.starts_with(&format!("{run},"))).count();
    assert_eq!((of("newton"), of("newton-pcg"), of("sgn"), of("sgd")), (3, 3, 5, 5), "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("newton-pcg,\"Newton-CG, preconditioned\",0,")), "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("sgd,\"SGD, tuned: lr ")), "{csv}");

    for chart in ["accuracy", "objective"] {
        let png = std::fs::read(dir.join(format!("{chart}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{chart}.png is not a PNG");
        let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg"))).unwrap();
        for name in ["Newton-CG", "preconditioned", "SGN", "SGD"] {
            assert!(svg.contains("<svg") && svg.contains(name), "{chart}.svg has no {name}");
        }
    }
    // The summary: every method, its final accuracy as logged, and the time to each target.
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
    assert!(stdout.contains(summary.trim()), "the printed table differs from summary.txt");
    for (method, records) in
        [("Newton-CG ", &newton), ("Newton-CG, preconditioned", &pcg), ("SGN", &sgn), ("SGD, tuned", &sgd)]
    {
        let last = records.last().unwrap()["test_acc"].as_f64().unwrap();
        let line = summary.lines().find(|l| l.starts_with(method)).unwrap();
        assert!(line.contains(&format!("{:.2}%", 100.0 * last)), "{line}");
    }
    assert!(summary.contains("s to 20.0%") && summary.contains("s to 50.0%"), "{summary}");
    assert!(summary.contains("SGD's tuning, 0.5 training seconds each"), "{summary}");
}

fn run_status(args: &[&str]) -> (Option<i32>, String, String) {
    let output = program().args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// `--resume` continues only the problem the checkpoint was trained on: another loss, C,
/// limit or number of training samples is refused (exit 2, before the GPU opens) naming both
/// values; a tampered optimiser state is refused naming the field; a data set without test
/// samples is refused by every command that scores on it.
#[test]
fn resuming_another_problem_or_a_tampered_state_and_empty_test_sets_are_refused() {
    use newton_wgpu::data::{write_idx_images, write_idx_labels};
    use newton_wgpu::model::Checkpoint;
    use newton_wgpu::optim::newton::NewtonState;
    let dir = scratch("program-resume");
    let checkpoint = dir.join("run.checkpoint");
    let ck = checkpoint.to_str().unwrap();
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let base = ["train", "--net", net, "--gn-size", "10"];
    let trained = ["--loss", "ce", "--limit", "100", "--c", "0.01"];
    run(&[&base[..], &trained, &["--iters", "1", "--checkpoint", ck]].concat());
    let resume = [&base[..], &["--iters", "2", "--resume", ck]].concat();
    let standardized: Vec<&str> = [&trained[..], &["--standardize"]].concat();
    for (problem, says) in [
        (&["--loss", "mse", "--limit", "100", "--c", "0.01"][..], "--loss ce, this run --loss mse"),
        (&["--loss", "ce", "--limit", "100", "--c", "0.02"], "--c 0.01, this run --c 0.02"),
        (&["--loss", "ce", "--limit", "120", "--c", "0.01"], "--limit 100, this run --limit 120"),
        (&["--loss", "ce", "--limit", "100", "--validation", "0.2"], "100 training samples, this run 80"),
        (&standardized, "no --standardize, this run --standardize"),
    ] {
        let (code, stdout, stderr) = run_status(&[&resume[..], problem].concat());
        assert_eq!(code, Some(2), "{problem:?}: {stderr}");
        assert!(stderr.contains(says) && stderr.contains("run.checkpoint"), "{problem:?}: {stderr}");
        assert!(!stdout.contains("adapter:"), "{problem:?} opened the GPU first: {stdout}");
    }
    let resumed = run(&[&resume[..], &trained].concat());
    assert!(resumed.contains("after iteration 1"), "{resumed}");

    let network = newton_wgpu::model::Model::load(&checkpoint).unwrap().network;
    let mut tampered = Checkpoint::load_for(&checkpoint, &network).unwrap();
    let mut state: NewtonState = serde_json::from_str(&tampered.state).unwrap();
    state.lambda = -1.0;
    tampered.state = serde_json::to_string(&state).unwrap();
    tampered.save(&checkpoint).unwrap();
    let (code, _, stderr) = run_status(&[&resume[..], &trained].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`lambda`") && stderr.contains("run.checkpoint"), "{stderr}");

    let data = dir.join("no-test-samples");
    std::fs::create_dir_all(&data).unwrap();
    let pixels: Vec<u8> = (0..20 * 28 * 28).map(|i| (i % 251) as u8).collect();
    write_idx_images(&data.join("train-images-idx3-ubyte"), 28, 28, &pixels, false).unwrap();
    write_idx_labels(&data.join("train-labels-idx1-ubyte"), &[3; 20], false).unwrap();
    write_idx_images(&data.join("t10k-images-idx3-ubyte"), 28, 28, &[], false).unwrap();
    write_idx_labels(&data.join("t10k-labels-idx1-ubyte"), &[], false).unwrap();
    let data_arg = data.to_str().unwrap();
    for args in [
        vec!["train", "--data", data_arg, "--net", net, "--iters", "1"],
        vec!["predict", "--data", data_arg, "--model", ck],
    ] {
        let (code, stdout, stderr) = run_status(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("the test set in") && stderr.contains("no-test-samples"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("adapter:"), "{args:?} opened the GPU first: {stdout}");
    }
}

/// What a checkpoint's state depends on is recorded and checked on resume: another optimiser
/// or mini-batch is refused (exit 2, naming both values, before the GPU opens), and a state
/// whose step count does not match its epochs and mini-batches (a checkpoint written before
/// the batch was recorded) is refused naming `step`. The best validation accuracy travels in
/// the checkpoint: a resumed run that does not pass it leaves the saved model alone.
#[test]
fn resumed_runs_keep_their_mini_batches_and_their_best_model() {
    use newton_wgpu::model::{BestValidation, Checkpoint, Model};
    let dir = scratch("program-resume-sgn");
    let (checkpoint, best) = (dir.join("sgn.checkpoint"), dir.join("best.safetensors"));
    let (ck, saved) = (checkpoint.to_str().unwrap(), best.to_str().unwrap());
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let problem = ["train", "--net", net, "--loss", "ce", "--limit", "200", "--validation", "0.25"];
    let sgn = ["--optim", "sgn", "--sgn-batch", "50", "--save", saved];
    run(&[&problem[..], &sgn, &["--epochs", "1", "--checkpoint", ck]].concat());
    let resume = [&problem[..], &["--epochs", "2", "--resume", ck, "--save", saved]].concat();
    for (change, says) in [
        (["--optim", "sgn", "--sgn-batch", "25"], "--sgn-batch 50 (as used), this run --sgn-batch 25"),
        (["--optim", "sgd", "--batch", "50"], "--optim sgn, this run --optim sgd"),
    ] {
        let (code, stdout, stderr) = run_status(&[&resume[..], &change].concat());
        assert_eq!(code, Some(2), "{change:?}: {stderr}");
        assert!(stderr.contains(says) && stderr.contains("sgn.checkpoint"), "{change:?}: {stderr}");
        assert!(!stdout.contains("adapter:"), "{change:?} opened the GPU first: {stdout}");
    }

    // The checkpoint says a better model was saved than any this run will find.
    let network = Model::load(&checkpoint).unwrap().network;
    let mut better = Checkpoint::load_for(&checkpoint, &network).unwrap();
    let recorded = better.trained_on.best_validation.clone().expect("the best so far is recorded");
    assert!(recorded.after == "epoch 0" || recorded.after == "epoch 1", "{recorded:?}");
    better.trained_on.best_validation = Some(BestValidation { accuracy: 1.0, after: "epoch 9".into() });
    better.save(&checkpoint).unwrap();
    let model_before = std::fs::read(&best).unwrap();
    let stdout = run(&[&resume[..], &["--optim", "sgn", "--sgn-batch", "50"]].concat());
    assert!(stdout.contains("best validation accuracy, 100.00% (after epoch 9)"), "{stdout}");
    assert_eq!(std::fs::read(&best).unwrap(), model_before, "the better model was replaced");
    let after = Checkpoint::load_for(&checkpoint, &network).unwrap();
    assert_eq!(after.trained_on.best_validation.as_ref().unwrap().accuracy, 1.0);

    // A checkpoint that does not record its batch: the counters catch the change.
    let mut older = after;
    older.trained_on.batch = None;
    older.save(&checkpoint).unwrap();
    let resume_more = [&problem[..], &["--epochs", "3", "--resume", ck, "--optim", "sgn"]].concat();
    let (code, _, stderr) = run_status(&[&resume_more[..], &["--sgn-batch", "25"]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`step`") && stderr.contains("sgn.checkpoint"), "{stderr}");
}

/// A binary built without MPI that a launcher starts as one of several ranks refuses to run
/// (it would train P copies of the same job), with 2 and what to do.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_binary_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    for variable in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let output = program().args(["train", "--limit", "100"]).env(variable, "2").output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains("one of 2 ranks") && stderr.contains("--features mpi"), "{stderr}");
        assert!(!stdout.contains("data:"), "{variable}: it ran: {stdout}");
    }
}

/// The program, with kernel tuning off unless a test turns it on: runs whose logs are compared
/// must run the same kernels, and tuning would time them anew in every run.
fn program() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_newton-wgpu"));
    command.env("NEWTON_WGPU_TUNE", "off");
    command
}

/// `newton-wgpu tune` times a network's kernels and caches the winners; a later run reads them
/// without timing anything; a cache changed by hand is not trusted (a warning, then tuned
/// again), and NEWTON_WGPU_TUNE=off leaves the cache alone.
#[test]
fn kernels_are_tuned_once_and_read_back_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let run = |args: &[&str], mode: &str| {
        let output = program()
            .args(args)
            .args(["--net", net, "--limit", "64", "--bsize", "16"])
            .env("NEWTON_WGPU_TUNE", mode)
            .env("NEWTON_WGPU_CACHE_DIR", dir.path())
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {text}");
        text
    };
    let first = run(&["tune"], "full");
    let timed = first.lines().find(|l| l.starts_with("tuning (full): ")).expect(&first).to_owned();
    assert!(!timed.contains(": 0 kernel choices timed"), "{timed}");
    assert!(first.contains("winner") && first.contains(" 0 from the cache"), "{first}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cache file per adapter and build: {files:?}");
    let cache = std::fs::read_to_string(&files[0]).unwrap();
    assert!(cache.contains("\"checksum\"") && cache.contains("\"kernel\""), "{cache}");

    let again = run(&["eval"], "cached");
    assert!(
        again.contains("tuning (cached): 0 kernel choices timed") && !again.contains(" 0 from the cache"),
        "{again}"
    );
    assert!(!again.contains("warning"), "{again}");

    // One winner's time changed by hand (a digit put before it): the checksum no longer matches.
    let tampered = cache.replacen("\"us\": ", "\"us\": 1", 1);
    assert_ne!(tampered, cache);
    std::fs::write(&files[0], &tampered).unwrap();
    let distrusted = run(&["eval"], "full");
    assert!(
        distrusted.contains("warning: the tuning cache") && distrusted.contains("checksum"),
        "{distrusted}"
    );
    assert!(
        !distrusted.contains(": 0 kernel choices timed"),
        "a distrusted cache is tuned again: {distrusted}"
    );
    // Garbage is a warning too, and tuning off reads and writes nothing.
    std::fs::write(&files[0], "not json").unwrap();
    let off = run(&["eval"], "off");
    assert!(off.contains("windowed convolution kernels") && !off.contains("warning"), "{off}");
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "not json");
    let garbage = run(&["eval"], "cached");
    assert!(garbage.contains("is not a cache of this program"), "{garbage}");
}

/// `newton-wgpu train … | head`: the reader goes away before the first line. Printing stops,
/// not the training: the model is saved, stderr says what happened, and the exit status is 3.
#[test]
fn a_closed_standard_output_stops_the_printing_not_the_training() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let mut child = program()
        .args(["train", "--net", net, "--limit", "64", "--iters", "2", "--save", model.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("standard output was closed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(model.is_file(), "the model was saved");
}

/// Outputs are tried before training, not only named: a folder that refuses new files (/sys
/// refuses them even to root) fails at once with exit 2, naming the option and the path, not
/// a hidden temporary file; two outputs that name one file (directly, through `./`, or through
/// a link) are refused; a name at the file system's limit is written (the temporary file's name
/// is shortened to fit).
#[test]
fn outputs_are_tried_and_kept_apart_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.safetensors");
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let dotted = dir.path().join(".").join("out.safetensors");
    let (file_arg, link_arg, dotted_arg) =
        (file.to_str().unwrap(), link.to_str().unwrap(), dotted.to_str().unwrap());
    let cases: [(Vec<&str>, &[&str]); 4] = [
        (
            vec!["--save", "/sys/newton-wgpu-model.safetensors"],
            &["--save", "/sys/newton-wgpu-model", "cannot create"],
        ),
        (vec!["--save", file_arg, "--checkpoint", file_arg], &["--save and --checkpoint", "out.safetensors"]),
        (
            vec!["--checkpoint", dotted_arg, "--save", link_arg],
            &["--save and --checkpoint", "out.safetensors"],
        ),
        (
            vec!["--log-json", file_arg, "--checkpoint", link_arg],
            &["--log-json and --checkpoint", "out.safetensors"],
        ),
    ];
    for (args, wanted) in cases {
        let output = program().arg("train").args(&args).output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for text in wanted {
            assert!(stderr.contains(text), "{args:?}: {text:?} not in {stderr}");
        }
        // A temporary name is the target's with a suffix: `.out.safetensors.<pid>-…`.
        assert!(!stderr.contains("safetensors."), "{args:?} named a temporary file: {stderr}");
        assert!(!stdout.contains("adapter:"), "{args:?} opened the GPU before refusing: {stdout}");
    }
    assert!(!file.exists() && std::fs::read_dir(dir.path()).unwrap().count() == 1, "nothing was written");
    // 250 bytes of name, and the temporary name's suffix (some 30 bytes) on top.
    let long = dir.path().join(format!("{}.st", "m".repeat(247)));
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let output = program()
        .args(["train", "--net", net, "--limit", "64", "--iters", "1", "--save", long.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(long.is_file());
}

/// What the settings line says is what runs: a batch past the training set is all of it, and
/// the line says so (it once printed the size given, 2^64 − 1 included).
#[test]
fn settings_lines_print_the_sizes_used() {
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let base = ["train", "--net", net, "--limit", "300", "--epochs", "0"];
    let sgn = run(&[&base[..], &["--optim", "sgn", "--sgn-batch", "100000"]].concat());
    assert!(sgn.contains("batch = 300, |S| = 30,"), "{sgn}");
    let sgd = run(&[&base[..], &["--optim", "sgd", "--batch", "100000"]].concat());
    assert!(sgd.contains("batch = 300,"), "{sgd}");
}

/// A network file's errors name the file, and the layer where a layer is at fault, before the
/// GPU opens: a window larger than its input, a zero field, outputs that are not the data's
/// classes, weights past 2^31 − 1 values (once a placeholder count and no layer).
#[test]
fn network_file_errors_name_the_file_and_the_layer() {
    let dir = scratch("program-network-files");
    let dense = |units: &[usize]| -> String {
        let layers: String =
            units.iter().map(|u| format!("[[layers]]\ntype = \"dense\"\nunits = {u}\n")).collect();
        format!("[[layers]]\ntype = \"flatten\"\n{layers}")
    };
    let cases = [
        (
            "window.toml",
            "[[layers]]\ntype = \"conv\"\nkernel = 40\nchannels = 4\n".to_owned(),
            "layer 1 (conv): a window of 40",
        ),
        (
            "zero.toml",
            "[[layers]]\ntype = \"conv\"\nkernel = 0\nchannels = 4\n".to_owned(),
            "layer 1 (conv): `kernel` must be at least 1",
        ),
        ("outputs.toml", dense(&[12]), "the network has 12 outputs, but the data has 10 classes"),
        (
            "huge.toml",
            dense(&[65536, 65536, 10]),
            "layer 3 (dense): its weights would hold 4294967296 values",
        ),
    ];
    for (name, text, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let (code, stdout, stderr) = run_status(&["train", "--net", path.to_str().unwrap(), "--iters", "0"]);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("network file {}: ", path.display())) && stderr.contains(says),
            "{name}: {stderr}"
        );
        assert!(!stdout.contains("adapter:"), "{name} opened the GPU first: {stdout}");
    }
}

/// `predict` scores a model without an input mean as it is, and says so; a model with one is
/// scored quietly.
#[test]
fn predict_warns_of_a_model_without_an_input_mean() {
    let dir = scratch("program-predict-mean");
    let path = dir.join("model.safetensors");
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    run(&["train", "--net", net, "--limit", "100", "--iters", "0", "--save", path.to_str().unwrap()]);
    let (code, stdout, stderr) = run_status(&["predict", "--model", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("accuracy") && !stderr.contains("warning"), "{stderr}");
    let mut model = newton_wgpu::model::Model::load(&path).unwrap();
    model.normalizer = None;
    model.save(&path).unwrap();
    let (code, stdout, stderr) = run_status(&["predict", "--model", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("no input mean")
            && stderr.contains("model.safetensors"),
        "{stderr}"
    );
}

/// A model trained on standardised inputs keeps the channels' deviations, and `predict`
/// divides by them: it scores the test set as the run's last record did.
#[test]
fn predict_standardizes_as_training_did() {
    let dir = scratch("program-predict-standard");
    let (model, log) = (dir.join("model.safetensors"), dir.join("log.jsonl"));
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let (model_arg, log_arg) = (model.to_str().unwrap(), log.to_str().unwrap());
    let common = ["--net", net, "--loss", "ce", "--limit", "200", "--iters", "3", "--standardize"];
    run(&[&["train"][..], &common, &["--save", model_arg, "--log-json", log_arg]].concat());
    let std = newton_wgpu::model::Model::load(&model).unwrap().normalizer.unwrap().std;
    assert!(std.is_some_and(|s| s.len() == 1 && s[0] > 0.0 && s[0] != 1.0), "input_std missing or trivial");
    let last: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    let trained = 100.0 * last["test_acc"].as_f64().unwrap();
    let stdout = run(&["predict", "--model", model_arg]);
    assert!(stdout.contains(&format!("accuracy {trained:.2}%")), "training ended at {trained:.2}%: {stdout}");
    // The same model scored without its deviations is another classifier.
    let mut unscaled = newton_wgpu::model::Model::load(&model).unwrap();
    unscaled.normalizer.as_mut().unwrap().std = None;
    unscaled.save(&model).unwrap();
    let stdout = run(&["predict", "--model", model_arg]);
    assert!(
        !stdout.contains(&format!("accuracy {trained:.2}%")),
        "the deviations made no difference: {stdout}"
    );
}

/// The sweep runs the grids of the methods --methods names, labels each run by the sizes it
/// uses (a batch past the training set once gave three runs of one size, named as three), and
/// refuses --tune-sgd, which it would ignore. A report folder that is a link leading nowhere
/// is refused saying so (it once said "File exists").
#[test]
fn the_sweep_runs_what_it_names_and_report_folders_are_checked() {
    let dir = scratch("program-sweep");
    let out = dir.join("report");
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    let base = ["compare", "--sweep", "--net", net, "--limit", "300", "--epochs", "0"];
    run(&[&base[..], &["--methods", "sgn", "--out", out.to_str().unwrap()]].concat());
    let mut logs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        ["sgn-B250-cg20.jsonl", "sgn-B250-cg5.jsonl", "sgn-B300-cg20.jsonl", "sgn-B300-cg5.jsonl"]
    );

    let (code, _, stderr) = run_status(&[&base[..], &["--tune-sgd", "5"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tune-sgd") && stderr.contains("without --sweep"), "{stderr}");

    let (dangling, looped) = (dir.join("dangling"), dir.join("loop"));
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    for link in [dangling, looped] {
        let (code, stdout, stderr) =
            run_status(&["compare", "--limit", "100", "--out", link.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("is a symbolic link") && stderr.contains("leads to no folder"), "{stderr}");
        assert!(!stderr.contains("File exists") && !stdout.contains("adapter:"), "{stderr}");
    }
}

/// A run without a usable XDG_RUNTIME_DIR gets a private one in the temporary folder, removed
/// when it ends, whether it succeeds or fails.
#[test]
fn the_private_runtime_folder_is_removed_after_a_failure() {
    let dir = scratch("program-runtime-folder");
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");
    for (args, code) in [
        (&["train", "--net", net, "--limit", "100", "--iters", "0"][..], 0),
        (&["train", "--net", net, "--data", "no-such-folder"][..], 1),
        (&["train", "--net", net, "--limit", "100", "--probes", "1001", "--precondition"][..], 2),
    ] {
        let output = program().args(args).env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &dir).output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let left: Vec<_> =
            std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}
