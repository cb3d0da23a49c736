//! The ranks the program runs as: one process, or (built with the `mpi` feature and started
//! by `mpirun`) the ranks of an MPI job, of which only rank 0 prints and writes files.

use anyhow::Result;
use newton_wgpu::comm::{Communicator, SingleProcess};

#[cfg(not(feature = "mpi"))]
use super::usage::Usage;

/// A usage error that every rank meets at the same point, knowing the others do (a command
/// that does not run across ranks, ranks started differently): each ends by itself with exit
/// 2, and none needs to end the others. Rank 0 alone prints one that reads the same on every
/// rank; each rank prints its own view of a disagreement.
#[derive(Debug)]
pub struct OnEveryRank {
    pub message: String,
    /// The message differs from rank to rank.
    pub own: bool,
}

impl OnEveryRank {
    /// The same message on every rank.
    pub fn alike(message: String) -> Self {
        Self { message, own: false }
    }
}

impl std::fmt::Display for OnEveryRank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OnEveryRank {}

/// The ranks of this run.
pub struct Ranks {
    #[cfg(feature = "mpi")]
    mpi: Option<newton_wgpu::comm::over_mpi::Mpi>,
}

/// A variable of this process's environment.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Ranks {
    /// The ranks this process is one of. A binary built without MPI that a launcher started as
    /// one of several ranks refuses to run (P copies of the same job would each train alone).
    pub fn join() -> Result<Self> {
        let several = super::launch::job_size(env_var).filter(|&p| p > 1);
        #[cfg(feature = "mpi")]
        {
            let mpi = match several {
                Some(_) => Some(
                    newton_wgpu::comm::over_mpi::Mpi::initialize()
                        .ok_or_else(|| anyhow::anyhow!("MPI was initialised twice"))?,
                ),
                None => None,
            };
            let ranks = Self { mpi };
            if ranks.comm().size() > 1 {
                share_the_cores();
                one_gpu_per_local_rank();
                if ranks.comm().rank() > 0 {
                    silence_stdout();
                }
            }
            Ok(ranks)
        }
        #[cfg(not(feature = "mpi"))]
        match several {
            Some(size) => Err(Usage(format!(
                "started as one of {size} ranks, but this binary was built without MPI: build it \
                 with `cargo build --release --features mpi` (or run one rank)"
            ))
            .into()),
            None => Ok(Self {}),
        }
    }

    pub fn comm(&self) -> &dyn Communicator {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi;
        }
        &SingleProcess
    }

    /// "rank r of P: " across ranks, nothing for one process.
    pub fn prefix(&self) -> String {
        match self.comm().size() {
            1 => String::new(),
            size => format!("rank {} of {size}: ", self.comm().rank()),
        }
    }

    /// Refuses `what`, which does not run across ranks, saying what to do `instead` (on
    /// every rank alike: the command lines agreed).
    pub fn single(&self, what: &str, instead: &str) -> Result<()> {
        if self.comm().size() > 1 {
            return Err(OnEveryRank::alike(format!(
                "{what} does not run across ranks yet ({} ranks were started): {instead}",
                self.comm().size()
            ))
            .into());
        }
        Ok(())
    }

    /// Refuses to go on unless every rank holds rank 0's `facts` (exit 2 on every rank, each
    /// saying what differs; see [`newton_wgpu::comm::disagreement`]). One process agrees.
    pub fn agree(&self, facts: &newton_wgpu::comm::Facts) -> Result<()> {
        match newton_wgpu::comm::disagreement(self.comm(), facts)? {
            Some(message) => Err(OnEveryRank { message, own: true }.into()),
            None => Ok(()),
        }
    }

    /// What every rank must share before a command runs: the program's version and kernels,
    /// the command line, and the variables that choose kernels.
    pub fn agree_on_the_start(&self) -> Result<()> {
        let arguments: Vec<String> =
            std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        let variable = |name: &str| std::env::var(name).unwrap_or_default();
        self.agree(&[
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("kernels", newton_wgpu::kernels::sources_fingerprint()),
            ("command line", arguments.join(" ")),
            ("NEWTON_WGPU_CONV", variable("NEWTON_WGPU_CONV")),
            ("NEWTON_WGPU_TUNE", variable("NEWTON_WGPU_TUNE")),
        ])
    }

    /// Ends the whole job after this rank failed with `status`: the other ranks would wait
    /// for it in their next sum forever. One process just returns.
    pub fn fail(&self, status: u8) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            eprintln!("{}ending the job", self.prefix());
            mpi.abort(i32::from(status));
        }
        let _ = status;
    }
}

/// Ranks on one machine take its GPUs in turn, by their local rank (whichever launcher says
/// it, [`super::launch::placement`]), unless an adapter is named. The index counts modulo the
/// adapters a rank sees: where the launcher gives each rank one GPU alone (Slurm with
/// `ConstrainDevices`), every rank takes the one it sees.
#[cfg(feature = "mpi")]
fn one_gpu_per_local_rank() {
    let named =
        ["WGPU_ADAPTER_NAME", "NEWTON_WGPU_ADAPTER_INDEX"].iter().any(|v| std::env::var_os(v).is_some());
    if let (false, Some(place)) = (named, super::launch::placement(env_var)) {
        std::env::set_var("NEWTON_WGPU_ADAPTER_INDEX", place.local_rank.to_string());
    }
}

/// Lavapipe runs each rank's kernels on a thread per core; ranks sharing a machine would
/// oversubscribe it. Each gets its share unless LP_NUM_THREADS says otherwise.
#[cfg(feature = "mpi")]
fn share_the_cores() {
    let local = super::launch::placement(env_var).and_then(|place| place.local_size);
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("LP_NUM_THREADS", (cores / local.unwrap_or(1).max(1)).max(1).to_string());
    }
}

/// Sends this process's standard output to /dev/null: only rank 0 prints the log.
#[cfg(feature = "mpi")]
fn silence_stdout() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 replaces this process's standard output; both descriptors
        // are valid, and `null` is closed when dropped, leaving fd 1 open.
        unsafe {
            libc_dup2(null.as_raw_fd(), 1);
        }
    }
}

#[cfg(feature = "mpi")]
extern "C" {
    #[link_name = "dup2"]
    fn libc_dup2(old: i32, new: i32) -> i32;
}
