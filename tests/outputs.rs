//! Every file the program writes goes through `output`: special files (FIFOs, sockets, device
//! nodes, folders) are refused and left as they are, never opened; links are resolved and the
//! file they point to is replaced; a failed write leaves the target and no temporary file.
//! Everything here happens inside a temporary folder: no system path is ever a target.
#![cfg(unix)]

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use newton_wgpu::loss::Loss;
use newton_wgpu::model::{Checkpoint, Model, ModelError, TrainedOn};
use newton_wgpu::nn::{LayerSpec, Network, Shape};
use newton_wgpu::output::{self, LineFile, OutputError};

fn model() -> Model {
    let network = Network::new(Shape::new(1, 4, 4), &[LayerSpec::dense(3)]).unwrap();
    Model { theta: network.init_params(1), network, normalizer: None, loss: Loss::CrossEntropy }
}

fn trained_on() -> TrainedOn {
    TrainedOn { c: 0.01, samples: 10, limit: None, ..Default::default() }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn make_fifo(path: &Path) {
    assert_eq!(unsafe { libc::mkfifo(c_path(path).as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// A character device in `dir`: a node made there as /dev/null's twin when running as root;
/// otherwise a link to /dev/null, which a user who is not root cannot replace or damage (so a
/// broken check would fail the test without harming the machine).
fn make_char_device(dir: &Path) -> PathBuf {
    let node = dir.join("device");
    let null = libc::makedev(1, 3);
    if unsafe { libc::mknod(c_path(&node).as_ptr(), libc::S_IFCHR | 0o666, null) } == 0 {
        return node;
    }
    assert_ne!(unsafe { libc::geteuid() }, 0, "mknod failed as root: {}", io::Error::last_os_error());
    symlink("/dev/null", &node).unwrap();
    node
}

/// Each way the program writes a file, by name.
type Writer = (&'static str, fn(&Path) -> Result<(), String>);
const WRITERS: [Writer; 4] = [
    ("Model::save", |p| model().save(p).map_err(|e| e.to_string())),
    ("Checkpoint::save", |p| {
        let checkpoint =
            Checkpoint { model: model(), state: "{}".into(), velocity: None, trained_on: trained_on() };
        checkpoint.save(p).map_err(|e| e.to_string())
    }),
    ("output::write", |p| output::write(p, b"report").map_err(|e| e.to_string())),
    ("LineFile::push", |p| {
        let mut log = LineFile::create(p).map_err(|e| e.to_string())?;
        log.push("{}").map_err(|e| e.to_string())
    }),
];

/// Runs `write` on another thread and fails the test if it does not return in time (opening a
/// FIFO for writing blocks until a reader comes).
fn within_seconds(path: &Path, write: fn(&Path) -> Result<(), String>) -> Result<(), String> {
    let (done, result) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || done.send(write(&path)).unwrap());
    result.recv_timeout(Duration::from_secs(20)).expect("the write blocked: was the special file opened?")
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn special_files_are_refused_and_left_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    make_fifo(&fifo);
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let device = make_char_device(dir.path());
    let linked_fifo = dir.path().join("link-to-fifo");
    symlink(&fifo, &linked_fifo).unwrap();
    let before = names(dir.path());

    for (target, kind) in [
        (&fifo, "a FIFO"),
        (&socket, "a socket"),
        (&folder, "a folder"),
        (&device, "a character device"),
        (&linked_fifo, "a FIFO"),
    ] {
        for (writer, write) in WRITERS {
            let message = within_seconds(target, write).expect_err(&format!("{writer} wrote over {kind}"));
            assert!(
                message.contains(&target.display().to_string()) && message.contains(kind),
                "{writer} on {kind}: {message}"
            );
        }
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(&socket).unwrap().file_type().is_socket());
    assert!(std::fs::symlink_metadata(&folder).unwrap().is_dir());
    assert!(std::fs::symlink_metadata(&linked_fifo).unwrap().file_type().is_symlink());
    assert!(std::fs::metadata(&device).unwrap().file_type().is_char_device());
    assert_eq!(names(dir.path()), before, "a temporary file was left behind");
}

#[test]
fn a_link_is_resolved_and_the_file_it_points_to_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let real = elsewhere.join("model.safetensors");
    std::fs::write(&real, "old").unwrap();
    // A chain: an absolute link to a relative one, which points into another folder.
    let relative = dir.path().join("relative");
    symlink("elsewhere/model.safetensors", &relative).unwrap();
    let link = dir.path().join("link");
    symlink(&relative, &link).unwrap();
    let dangling = dir.path().join("dangling");
    symlink("elsewhere/new.safetensors", &dangling).unwrap();

    for (writer, write) in WRITERS {
        std::fs::write(&real, "old").unwrap();
        within_seconds(&link, write).unwrap_or_else(|e| panic!("{writer}: {e}"));
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{writer}");
        assert!(std::fs::symlink_metadata(&relative).unwrap().file_type().is_symlink(), "{writer}");
        assert_ne!(std::fs::read(&real).unwrap(), b"old", "{writer} did not write through the link");
    }
    model().save(&dangling).unwrap();
    assert_eq!(Model::load(&elsewhere.join("new.safetensors")).unwrap(), model());
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(names(&elsewhere), ["model.safetensors", "new.safetensors"]);
    assert_eq!(names(dir.path()), ["dangling", "elsewhere", "link", "relative"]);
}

#[test]
fn a_link_planted_at_the_old_temporary_name_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (target, victim) = (dir.path().join("model.safetensors"), dir.path().join("victim"));
    std::fs::write(&victim, "keep").unwrap();
    symlink(&victim, dir.path().join("model.safetensors.partial")).unwrap();
    model().save(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(Model::load(&target).unwrap(), model());
}

/// Passes `budget` bytes to `inner`, then fails as a full disk does.
struct FullDisk<'a> {
    inner: &'a mut dyn Write,
    budget: usize,
}

impl Write for FullDisk<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.inner.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_failed_write_leaves_the_target_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("checkpoint.safetensors");
    std::fs::write(&target, "the last good checkpoint").unwrap();
    for budget in [0, 1, 4095, 4096, 100_000] {
        let error = output::write_with(&target, |file| {
            let mut disk = FullDisk { inner: file, budget };
            disk.write_all(&vec![7u8; 200_000])
        })
        .unwrap_err();
        assert!(
            matches!(&error, OutputError::Io { path, source } if path == &target && source.kind() == io::ErrorKind::StorageFull),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "the last good checkpoint");
        assert_eq!(names(dir.path()), ["checkpoint.safetensors"], "after a failure at byte {budget}");
    }
}

#[test]
fn paths_that_cannot_be_written_are_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("model.safetensors");
    let error = model().save(&missing).unwrap_err();
    assert!(matches!(&error, ModelError::Output(OutputError::MissingFolder { .. })), "{error}");
    assert!(error.to_string().contains("no-such-folder"), "{error}");

    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("model.safetensors");
    assert!(matches!(output::check(&under_a_file), Err(OutputError::NotAFolder { .. })));

    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    symlink(&b, &a).unwrap();
    symlink(&a, &b).unwrap();
    assert!(matches!(output::check(&a), Err(OutputError::TooManyLinks { .. })));
    assert_eq!(names(dir.path()), ["a", "b", "file"]);
}

#[test]
fn a_line_file_holds_whole_lines_and_continues_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let mut log = LineFile::create(&path).unwrap();
    log.push("1").unwrap();
    log.push("2").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n");
    let mut continued = LineFile::append(&path).unwrap();
    continued.push("3").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n3\n");
    let mut fresh = LineFile::create(&path).unwrap();
    fresh.push("a").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
    assert_eq!(names(dir.path()), ["log.jsonl"]);
}
