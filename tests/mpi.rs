//! The program across the ranks of an MPI job (`cargo test --features mpi --test mpi`; Open
//! MPI's `mpirun` on the PATH): P ranks reproduce one process, Newton-CG, SGN and SGD, a
//! resumed run continues exactly, and a rank that fails ends the whole job in bounded time, named.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `newton-wgpu args` as `ranks` ranks of one job (more ranks than cores are allowed).
fn mpirun<A: AsRef<std::ffi::OsStr>>(ranks: usize, args: &[A], env: &[(&str, &str)]) -> Output {
    mpirun_command(ranks, args, env).output().expect("mpirun (Open MPI) on the PATH")
}

fn mpirun_command<A: AsRef<std::ffi::OsStr>>(ranks: usize, args: &[A], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("mpirun");
    command
        .env("NEWTON_WGPU_TUNE", "off")
        .args(["--oversubscribe", "-np", &ranks.to_string(), env!("CARGO_BIN_EXE_newton-wgpu")])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// An MPMD job: one rank per (working folder, arguments), in order; its exit code, standard
/// output and standard error.
fn launch_mpmd(contexts: &[(&Path, &[&str])]) -> (Option<i32>, String, String) {
    let mut command = Command::new("mpirun");
    command.arg("--oversubscribe");
    for (i, (folder, args)) in contexts.iter().enumerate() {
        if i > 0 {
            command.arg(":");
        }
        let bin = env!("CARGO_BIN_EXE_newton-wgpu");
        command.args(["-np", "1", "--wdir", folder.to_str().unwrap(), bin]).args(*args);
    }
    let output = command
        .env("NEWTON_WGPU_TUNE", "off")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun (Open MPI) on the PATH");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// The process id of rank `rank` of the job whose environment holds
/// NEWTON_WGPU_TEST_MARK=`mark` (found in /proc by its environment).
fn rank_process(mark: &str, rank: usize) -> Option<u32> {
    let wanted = [format!("NEWTON_WGPU_TEST_MARK={mark}"), format!("OMPI_COMM_WORLD_RANK={rank}")];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        wanted.iter().all(|w| vars.contains(&w.as_bytes())).then_some(pid)
    })
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `args` run by one process and by `mpirun -np P` for each P of `ranks`, each logging to
/// `dir` (one.jsonl, npP.jsonl): the one process's records and each P's, checked to have run,
/// to be printed by rank 0 alone, and to hold as many records as the one process's.
fn one_process_and_ranks(
    dir: &Path,
    args: &[String],
    ranks: &[usize],
) -> (Vec<serde_json::Value>, Vec<(usize, Vec<serde_json::Value>)>) {
    let log = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let single = program().args(args).args(["--log-json", &log("one.jsonl")]).output().unwrap();
    assert!(single.status.success(), "{}", String::from_utf8_lossy(&single.stderr));
    let want = records(&dir.join("one.jsonl"));
    let runs = ranks
        .iter()
        .map(|&p| {
            let name = format!("np{p}.jsonl");
            let output = mpirun(p, &[args, &["--log-json".into(), log(&name)]].concat(), &[]);
            assert!(output.status.success(), "{p} ranks: {}", String::from_utf8_lossy(&output.stderr));
            // Rank 0 alone prints the log.
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(stdout.matches("done: test accuracy").count(), 1, "{stdout}");
            // Each rank reads its part of the data alone.
            if p > 1 {
                let part = format!("each of the {p} ranks reads its part: rank 0 holds");
                assert!(stdout.contains(&part), "{stdout}");
            }
            let got = records(&dir.join(&name));
            assert_eq!(got.len(), want.len(), "{p} ranks");
            (p, got)
        })
        .collect();
    (want, runs)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

const NET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/networks/small.toml");

/// SGD on 1, 2 and 3 ranks takes one process's steps; a validation set held out by position
/// and inputs standardised with statistics summed over the ranks' shards give the same
/// records.
#[test]
fn sgd_on_one_two_and_three_ranks_logs_what_one_process_does() {
    let dir = scratch("mpi-sgd");
    let args = ["train", "--optim", "sgd", "--net", NET, "--loss", "ce", "--limit", "300", "--epochs", "2"];
    let more = ["--batch", "64", "--lr", "0.05", "--momentum", "0.9", "--validation", "0.2", "--standardize"];
    let args = strings(&[&args[..], &more].concat());
    let (want, runs) = one_process_and_ranks(&dir, &args, &[1, 2, 3]);
    assert_eq!(want.len(), 3);
    for (ranks, got) in runs {
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["epoch"], w["epoch"]);
            let (gf, wf) = (g["f"].as_f64().unwrap(), w["f"].as_f64().unwrap());
            assert!((gf - wf).abs() <= 1e-4 * wf, "{ranks} ranks: f {gf} vs {wf}");
            for set in ["test_acc", "val_acc"] {
                let (ga, wa) = (g[set].as_f64().unwrap(), w[set].as_f64().unwrap());
                assert!((ga - wa).abs() <= 0.01, "{ranks} ranks: {set} {ga} vs {wa}");
            }
        }
    }
}

/// Newton-CG on 1, 2 and 3 ranks takes one process's iterations (the same accepted steps and
/// CG step counts, f within 1e-4), and a resumed run on 2 ranks logs what an uninterrupted
/// one does.
#[test]
fn newton_on_one_two_and_three_ranks_logs_what_one_process_does() {
    let dir = scratch("mpi-newton");
    let args = ["train", "--net", NET, "--loss", "ce", "--limit", "1000", "--gn-size", "100"];
    let log = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let with = |more: &[&str]| -> Vec<String> { args.iter().chain(more).map(|a| a.to_string()).collect() };
    let (want, runs) = one_process_and_ranks(&dir, &with(&["--iters", "3"]), &[1, 2, 3]);
    assert_eq!(want.len(), 4);
    let same = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        for key in ["iter", "accepted", "cg_iters", "alpha"] {
            assert_eq!(a[key], b[key], "{what}: {key}");
        }
        let (af, bf) = (a["f"].as_f64().unwrap(), b["f"].as_f64().unwrap());
        assert!((af - bf).abs() <= 1e-4 * bf, "{what}: f {af} vs {bf}");
    };
    for (ranks, got) in runs {
        for (g, w) in got.iter().zip(&want) {
            same(g, w, &format!("{ranks} ranks"));
        }
        if ranks > 1 {
            assert!(got[1]["comm_s"].as_f64().unwrap() > 0.0, "{:?}", got[1]);
        }
    }
    // Two iterations with a checkpoint, then resumed to three: the log of three at once.
    let checkpoint = log("run.checkpoint");
    let first = mpirun(
        2,
        &with(&["--iters", "2", "--checkpoint", &checkpoint, "--log-json", &log("resumed.jsonl")]),
        &[],
    );
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let resume = with(&["--iters", "3", "--resume", &checkpoint, "--log-json", &log("resumed.jsonl")]);
    let second = mpirun(2, &resume, &[]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let (resumed, straight) = (records(&dir.join("resumed.jsonl")), records(&dir.join("np2.jsonl")));
    assert_eq!(resumed.len(), straight.len());
    for (r, s) in resumed.iter().zip(&straight) {
        assert_eq!((&r["iter"], &r["f"], &r["cg_iters"]), (&s["iter"], &s["f"], &s["cg_iters"]));
    }
}

/// SGN on 2 and 3 ranks takes one process's steps (the same steps taken and refused, CG
/// step counts and λ, f within 1e-4), with mini-batches and S that do not split evenly over
/// 3 ranks; a run on 2 ranks resumed after its first epoch logs what an uninterrupted one
/// does. The network is smooth (tanh, average pooling): with ReLU and max-pooling a rounding
/// difference in the summed gradient that moves a unit across a kink or a pooling tie changes
/// the next step by a jump (measured: ten steps of the ReLU network ended 1.6e-3 apart on two
/// ranks, 3e-6 on three), which would test luck rather than the sums.
#[test]
fn sgn_on_two_and_three_ranks_logs_what_one_process_does() {
    let dir = scratch("mpi-sgn");
    let net = dir.join("smooth.toml");
    let layers = [
        "type = \"conv\"\nkernel = 5\nchannels = 16\npadding = 2",
        "type = \"tanh\"",
        "type = \"avgpool\"\nsize = 2",
        "type = \"conv\"\nkernel = 3\nchannels = 32\npadding = 1",
        "type = \"tanh\"",
        "type = \"avgpool\"\nsize = 2",
        "type = \"dense\"\nunits = 10",
    ];
    std::fs::write(&net, layers.map(|layer| format!("[[layers]]\n{layer}\n")).concat()).unwrap();
    let net = net.to_str().unwrap();
    let args = ["train", "--optim", "sgn", "--net", net, "--loss", "ce", "--c", "1", "--limit", "400"];
    let args = [&args[..], &["--sgn-batch", "80", "--sgn-gn-size", "40", "--evals-per-epoch", "2"]].concat();
    let log = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let with = |more: &[&str]| -> Vec<String> { args.iter().chain(more).map(|a| a.to_string()).collect() };
    // One rank is the single-process path, as the Newton-CG and SGD tests show.
    let (want, runs) = one_process_and_ranks(&dir, &with(&["--epochs", "2"]), &[2, 3]);
    assert_eq!(want.len(), 5);
    let same = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        for key in ["epoch", "step", "cg_iters", "rejected", "lambda"] {
            assert_eq!(a[key], b[key], "{what}: {key}");
        }
        if let (Some(af), Some(bf)) = (a["f"].as_f64(), b["f"].as_f64()) {
            assert!((af - bf).abs() <= 1e-4 * bf, "{what}: f {af} vs {bf}");
        } else {
            assert_eq!(a["f"], b["f"], "{what}: f");
        }
        let (al, bl) = (a["running_loss"].as_f64().unwrap_or(0.0), b["running_loss"].as_f64().unwrap_or(0.0));
        assert!((al - bl).abs() <= 1e-4 * bl, "{what}: running loss {al} vs {bl}");
    };
    for (ranks, got) in runs {
        for (g, w) in got.iter().zip(&want) {
            same(g, w, &format!("{ranks} ranks"));
        }
    }
    let rejected: u64 = want.iter().map(|r| r["rejected"].as_u64().unwrap()).sum();
    let taken = want.last().unwrap()["step"].as_u64().unwrap() - rejected;
    assert!(taken > 0, "no step was taken: {want:?}");
    // One epoch with a checkpoint, then resumed to two: the log of two at once.
    let checkpoint = log("run.checkpoint");
    let first = mpirun(
        2,
        &with(&["--epochs", "1", "--checkpoint", &checkpoint, "--log-json", &log("resumed.jsonl")]),
        &[],
    );
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let resume = with(&["--epochs", "2", "--resume", &checkpoint, "--log-json", &log("resumed.jsonl")]);
    let second = mpirun(2, &resume, &[]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let (resumed, straight) = (records(&dir.join("resumed.jsonl")), records(&dir.join("np2.jsonl")));
    assert_eq!(resumed.len(), straight.len());
    for (r, s) in resumed.iter().zip(&straight) {
        assert_eq!((&r["step"], &r["f"], &r["lambda"]), (&s["step"], &s["f"], &s["lambda"]));
    }
}

/// Preconditioned Newton-CG on 2 and 3 ranks takes one process's iterations: each probe of
/// diag(G_S) is summed like a product, so every rank's M is one process's.
#[test]
fn preconditioned_newton_on_two_and_three_ranks_logs_what_one_process_does() {
    let dir = scratch("mpi-pcg");
    let args = ["train", "--net", NET, "--loss", "ce", "--limit", "600", "--gn-size", "60", "--precondition"];
    let (want, runs) =
        one_process_and_ranks(&dir, &strings(&[&args[..], &["--iters", "2"]].concat()), &[2, 3]);
    assert_eq!(want.len(), 3);
    for (ranks, got) in runs {
        for (g, w) in got.iter().zip(&want) {
            for key in ["iter", "accepted", "cg_iters", "alpha", "lambda"] {
                assert_eq!(g[key], w[key], "{ranks} ranks: {key}");
            }
            let (gf, wf) = (g["f"].as_f64().unwrap(), w["f"].as_f64().unwrap());
            assert!((gf - wf).abs() <= 1e-4 * wf, "{ranks} ranks: f {gf} vs {wf}");
        }
    }
}

#[test]
fn f_its_gradient_and_a_product_on_two_ranks_are_those_of_one_process() {
    let args = ["eval", "--net", NET, "--loss", "ce", "--limit", "500"];
    let single = program().args(args).output().unwrap();
    let across = mpirun(2, &args, &[]);
    let value = |output: &Output, key: &str| -> f64 {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {stdout}"));
        line.split('=').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    // So is one Gauss-Newton product, each rank computing its part of S's.
    for key in ["f(θ)", "‖∇f(θ)‖", "‖(G_S + I)·∇f‖"] {
        let (a, b) = (value(&across, key), value(&single, key));
        assert!((a - b).abs() <= 1e-5 * b, "{key}: {a} across two ranks, {b} in one process");
    }
}

#[test]
fn a_rank_that_fails_ends_the_job_in_bounded_time_naming_it() {
    let dir = scratch("mpi-fault");
    let checkpoint = dir.join("run.checkpoint");
    let ck = checkpoint.to_str().unwrap();
    let args = ["train", "--optim", "sgd", "--net", NET, "--limit", "300", "--epochs", "3", "--batch", "64"];
    let started = Instant::now();
    let output = mpirun(2, &[&args[..], &["--checkpoint", ck]].concat(), &[("NEWTON_WGPU_FAIL_AT", "1:2")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("rank 1 of 2") && stderr.contains("NEWTON_WGPU_FAIL_AT"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "the job took {:?} to end", started.elapsed());
    // A rank whose process dies (no MPI_Abort, no message of its own) ends the job too.
    let started = Instant::now();
    let crash = mpirun(2, &args, &[("NEWTON_WGPU_FAIL_AT", "1:1:crash")]);
    let stderr = String::from_utf8_lossy(&crash.stderr);
    assert!(!crash.status.success(), "{stderr}");
    assert!(stderr.contains("rank 1"), "mpirun names the rank that died: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "the job took {:?} to end", started.elapsed());
    // The last checkpoint rank 0 wrote is whole, and the job resumes from it.
    let model = newton_wgpu::model::Model::load(&checkpoint).unwrap();
    newton_wgpu::model::Checkpoint::load_for(&checkpoint, &model.network).unwrap();
    let resumed = mpirun(2, &[&args[..], &["--resume", ck]].concat(), &[]);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(stdout.contains("resumed from") && stdout.contains("after 3 epochs"), "{stdout}");
    // So for SGN, with a rank killed inside a step: once the first epoch's checkpoint is
    // written (θ0's comes first), rank 1's process is killed (SIGKILL) 0.3 s into the second
    // epoch, whose time is its 15 steps (f is evaluated once, at the epoch's end).
    let sgn_checkpoint = dir.join("sgn.checkpoint");
    let sgn = ["train", "--optim", "sgn", "--net", NET, "--limit", "300", "--epochs", "20"];
    let sgn = [&sgn[..], &["--sgn-batch", "20", "--checkpoint", sgn_checkpoint.to_str().unwrap()]].concat();
    let mark = format!("sgn-{}", std::process::id());
    let mut job = mpirun_command(2, &sgn, &[("NEWTON_WGPU_TEST_MARK", &mark)]).spawn().unwrap();
    let started = Instant::now();
    let epochs_done = || -> Option<usize> {
        let checkpoint = newton_wgpu::model::Checkpoint::load_for(&sgn_checkpoint, &model.network).ok()?;
        serde_json::from_str::<newton_wgpu::optim::sgn::SgnState>(&checkpoint.state).ok().map(|s| s.epoch)
    };
    while epochs_done().unwrap_or(0) < 1 {
        assert!(started.elapsed() < Duration::from_secs(300), "no SGN epoch checkpointed after 300 s");
        assert!(job.try_wait().unwrap().is_none(), "the SGN job ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let victim = rank_process(&mark, 1).expect("rank 1's process");
    assert!(Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap().success());
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "the SGN job outlived its rank by 120 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success() && stderr.contains("rank 1"), "{stderr}");
    let checkpoint = newton_wgpu::model::Checkpoint::load_for(&sgn_checkpoint, &model.network).unwrap();
    assert_eq!(checkpoint.trained_on.optimizer.as_deref(), Some("sgn"));
    let state: newton_wgpu::optim::sgn::SgnState = serde_json::from_str(&checkpoint.state).unwrap();
    assert!((1..20).contains(&state.epoch) && state.batch_in_epoch == 0, "{state:?}");
    // `info` says every rank's adapter; what does not run across ranks yet is refused with 2,
    // by rank 0 alone.
    let info = mpirun(2, &["info"], &[]);
    let stderr = String::from_utf8_lossy(&info.stderr);
    assert!(info.status.success(), "{stderr}");
    for rank in 0..2 {
        assert!(stderr.contains(&format!("rank {rank} of 2: adapter ")), "{stderr}");
    }
    let output = mpirun(2, &["tune", "--net", NET], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rank 0 of 2") && stderr.contains("tune does not run across ranks"), "{stderr}");
}

/// `predict` across 2 and 3 ranks: each rank reads and scores its shard of the test set, the
/// counts are summed, and rank 0 prints one process's accuracy and per-class table. Ranks
/// given different models refuse to run, saying so.
#[test]
fn predict_across_ranks_prints_what_one_process_does() {
    let dir = scratch("mpi-predict");
    // A model trained by SGD on the first `limit` samples, saved as `name`.
    let train = |name: &str, limit: &str| {
        let model = dir.join(name);
        let saved = program()
            .args([
                "train", "--optim", "sgd", "--net", NET, "--limit", limit, "--epochs", "1", "--batch", "64",
            ])
            .args(["--save", model.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
        model
    };
    let model = train("model.safetensors", "600");
    let args = ["predict", "--model", model.to_str().unwrap()];
    let single = program().args(args).output().unwrap();
    assert!(single.status.success(), "{}", String::from_utf8_lossy(&single.stderr));
    let table = |output: &Output| -> Vec<String> {
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.lines().filter(|line| !line.contains("ranks scored its part")).map(str::to_owned).collect()
    };
    let want = table(&single);
    assert!(want[0].starts_with("accuracy ") && want.len() == 12, "{want:?}");
    for ranks in [2, 3] {
        let across = mpirun(ranks, &args, &[]);
        assert!(across.status.success(), "{ranks} ranks: {}", String::from_utf8_lossy(&across.stderr));
        let stdout = String::from_utf8_lossy(&across.stdout);
        assert!(stdout.contains(&format!("each of the {ranks} ranks scored its part")), "{stdout}");
        assert_eq!(table(&across), want, "{ranks} ranks");
    }
    // Another model on rank 1: refused on every rank before anything is scored.
    let other = train("other.safetensors", "300");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let (one, two) = (dir.join("one"), dir.join("two"));
    for (folder, source) in [(&one, &model), (&two, &other)] {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::copy(source, folder.join("m.safetensors")).unwrap();
    }
    let predict = ["predict", "--model", "m.safetensors", "--data", data];
    let (code, stdout, stderr) = launch_mpmd(&[(&one, &predict[..]), (&two, &predict[..])]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("started differently from rank 0 (in model)"), "{stderr}");
    assert!(!stdout.contains("accuracy"), "{stdout}");
}

/// Ranks started differently refuse to run before any work, every rank saying what differs
/// (exit 2): another command line (an MPMD launch), or the same one naming files that differ
/// (here a network file by a relative path, in two working folders). A command refused on every
/// rank is said by every rank, which ends by itself and leaves no private runtime folder.
#[test]
fn ranks_that_disagree_refuse_to_run_each_saying_why() {
    let dir = scratch("mpi-disagree");
    let bin = env!("CARGO_BIN_EXE_newton-wgpu");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let train = ["train", "--optim", "sgd", "--net", NET, "--data", data, "--limit", "300", "--epochs", "1"];
    let (code, stdout, stderr) = launch_mpmd(&[
        (&dir, &[&train[..], &["--batch", "64"]].concat()),
        (&dir, &[&train[..], &["--batch", "32"]].concat()),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("rank 1 of 2: error: this rank was started differently"), "{stderr}");
    assert!(stderr.contains("--batch 32\" here") && stderr.contains("--batch 64\" on rank 0"), "{stderr}");
    assert!(
        stderr.contains("rank 0 of 2: error: rank 1 of 2 started differently from rank 0 (in command line)")
    );
    assert!(!stdout.contains("epoch"), "it trained: {stdout}");

    let (one, two) = (dir.join("one"), dir.join("two"));
    for (folder, units) in [(&one, 10), (&two, 12)] {
        std::fs::create_dir_all(folder).unwrap();
        let text = format!("[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = {units}\n[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n");
        std::fs::write(folder.join("net.toml"), text).unwrap();
    }
    let relative =
        ["train", "--optim", "sgd", "--net", "net.toml", "--data", data, "--limit", "300", "--epochs", "1"];
    let (code, _, stderr) = launch_mpmd(&[(&one, &relative[..]), (&two, &relative[..])]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("rank 1 of 2: error: this rank was started differently")
            && stderr.contains("network:")
    );
    assert!(stderr.contains("rank 0 of 2: error: rank 1 of 2 started differently from rank 0 (in network)"));

    let runtime = dir.join("tmp");
    std::fs::create_dir_all(&runtime).unwrap();
    let output = Command::new("mpirun")
        .args(["--oversubscribe", "-np", "2", bin, "tune", "--net", "cnn4"])
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &runtime)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // Every rank meets it alike: rank 0 says it once.
    assert!(stderr.contains("rank 0 of 2: error: tune does not run across ranks"), "{stderr}");
    assert!(!stderr.contains("rank 1 of 2: error"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("newton-wgpu-runtime"))
        .collect();
    assert!(left.is_empty(), "runtime folders left behind: {left:?}");

    // Too few samples for the ranks to share S: the message says how to mend it.
    let output = mpirun(2, &["train", "--net", NET, "--limit", "20", "--iters", "1"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("|S| = 1 of 20 training samples is fewer than the 2 ranks"), "{stderr}");
    assert!(stderr.contains("--gn-size 2 or more") && stderr.contains("at least 21 samples"), "{stderr}");
    // So for SGN: every rank holds a part of each mini-batch and of its S.
    for (sizes, says) in [
        (["--sgn-batch", "4", "--sgn-gn-size", "2"], "--sgn-gn-size: 2 is fewer than the 3 ranks"),
        (["--sgn-batch", "2", "--sgn-gn-size", "2"], "--sgn-batch: 2 is fewer than the 3 ranks"),
    ] {
        let args = [&["train", "--optim", "sgn", "--net", NET, "--limit", "50"][..], &sizes].concat();
        let output = mpirun(3, &args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{sizes:?}: {stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("3 or more, or start 2 ranks"),
            "{sizes:?}: {stderr}"
        );
        assert!(!stderr.contains("adapter"), "{sizes:?} opened the GPU first: {stderr}");
    }
}

/// `compare` on two ranks writes one report, rank 0's, with one process's results.
#[test]
fn compare_on_two_ranks_reports_what_one_process_does() {
    let dir = scratch("mpi-compare");
    let args = ["compare", "--net", NET, "--loss", "ce", "--limit", "600", "--iters", "2", "--epochs", "2"];
    let args = [&args[..], &["--gn-size", "60", "--methods", "newton,sgn,sgd"]].concat();
    let (one, two) = (dir.join("one"), dir.join("two"));
    let single = program().args(&args).args(["--out", one.to_str().unwrap()]).output().unwrap();
    assert!(single.status.success(), "{}", String::from_utf8_lossy(&single.stderr));
    let output = mpirun(2, &[&args[..], &["--out", two.to_str().unwrap()]].concat(), &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for name in ["newton.jsonl", "sgn.jsonl", "sgd.jsonl"] {
        let (a, b) = (records(&one.join(name)), records(&two.join(name)));
        assert_eq!(a.len(), b.len(), "{name}");
        for (a, b) in a.iter().zip(&b) {
            let (af, bf) = (a["f"].as_f64().unwrap(), b["f"].as_f64().unwrap());
            assert!((af - bf).abs() <= 1e-4 * af, "{name}: f {af} vs {bf}");
        }
    }
    for file in ["records.csv", "summary.txt", "accuracy.png", "objective.svg"] {
        assert!(two.join(file).is_file(), "{file} missing from the 2-rank report");
    }
}

/// The program, with kernel tuning off unless a test turns it on: runs whose logs are compared
/// must run the same kernels, and tuning would time them anew in every run.
fn program() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_newton-wgpu"));
    command.env("NEWTON_WGPU_TUNE", "off");
    command
}
