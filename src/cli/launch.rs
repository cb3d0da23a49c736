//! What a launcher tells a process it starts, through its environment: how many ranks the job
//! has and where this one sits on its machine. Open MPI's `mpirun` (including its PMIx-based
//! `prterun`), Slurm's `srun` (with `--mpi=pmix` or its own PMI), MPICH's Hydra and MVAPICH
//! each name these their own way. Only an MPI build places its ranks (and the tests read
//! the placement); every build reads the job's size, to refuse to run as one of several
//! ranks without MPI.

/// This process's place on its machine: its local rank and, when the launcher says, the
/// number of ranks there.
#[cfg(any(feature = "mpi", test))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub local_rank: usize,
    pub local_size: Option<usize>,
}

/// The number of ranks in the job, if a launcher says (Open MPI, Slurm, Hydra/PMI, PMIx,
/// MVAPICH).
pub fn job_size(var: impl Fn(&str) -> Option<String>) -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"]
        .iter()
        .find_map(|name| var(name)?.trim().parse().ok())
}

/// This process's place on its machine, from the first launcher whose local rank is set:
/// Open MPI (`OMPI_COMM_WORLD_LOCAL_RANK`, `…_LOCAL_SIZE`), Slurm (`SLURM_LOCALID`; the
/// node's task count from `SLURM_NTASKS_PER_NODE`, else this node's entry, `SLURM_NODEID`, of
/// `SLURM_STEP_TASKS_PER_NODE` or `SLURM_TASKS_PER_NODE`), Hydra (`MPI_LOCALRANKID`,
/// `MPI_LOCALNRANKS`), MVAPICH (`MV2_COMM_WORLD_LOCAL_RANK`, `…_LOCAL_SIZE`).
#[cfg(any(feature = "mpi", test))]
pub fn placement(var: impl Fn(&str) -> Option<String>) -> Option<Placement> {
    let number = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
    let pairs = [
        ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"),
    ];
    if let Some((local_rank, size)) = pairs.iter().find_map(|&(rank, size)| Some((number(rank)?, size))) {
        return Some(Placement { local_rank, local_size: number(size) });
    }
    let local_rank = number("SLURM_LOCALID")?;
    let this_node = |list: &str| slurm_tasks_per_node(list)?.get(number("SLURM_NODEID")?).copied();
    let local_size = number("SLURM_NTASKS_PER_NODE").or_else(|| {
        ["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"].iter().find_map(|name| this_node(&var(name)?))
    });
    Some(Placement { local_rank, local_size })
}

/// Slurm's tasks per node, "2(x3),1" → [2, 2, 2, 1]; None if it does not read so.
#[cfg(any(feature = "mpi", test))]
fn slurm_tasks_per_node(list: &str) -> Option<Vec<usize>> {
    let mut counts = Vec::new();
    for entry in list.trim().split(',') {
        let (count, repeat) = match entry.split_once("(x") {
            Some((count, rest)) => (count, rest.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (entry, 1),
        };
        let count: usize = count.parse().ok()?;
        // A node list this long is not a real one.
        if repeat > 1 << 20 || counts.len() + repeat > 1 << 20 {
            return None;
        }
        counts.extend(std::iter::repeat_n(count, repeat));
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |name| map.get(name).map(|v| v.to_string())
    }

    #[test]
    fn each_launcher_gives_the_local_rank_and_size() {
        let open_mpi = [("OMPI_COMM_WORLD_LOCAL_RANK", "3"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "4")];
        assert_eq!(placement(env(&open_mpi)), Some(Placement { local_rank: 3, local_size: Some(4) }));
        let hydra = [("MPI_LOCALRANKID", "1"), ("MPI_LOCALNRANKS", "2"), ("PMI_SIZE", "8")];
        assert_eq!(placement(env(&hydra)), Some(Placement { local_rank: 1, local_size: Some(2) }));
        assert_eq!(job_size(env(&hydra)), Some(8));
        let mvapich = [("MV2_COMM_WORLD_LOCAL_RANK", "0"), ("MV2_COMM_WORLD_LOCAL_SIZE", "6")];
        assert_eq!(placement(env(&mvapich)), Some(Placement { local_rank: 0, local_size: Some(6) }));
        // srun --ntasks-per-node=4
        let srun = [("SLURM_LOCALID", "2"), ("SLURM_NTASKS_PER_NODE", "4"), ("SLURM_NTASKS", "8")];
        assert_eq!(placement(env(&srun)), Some(Placement { local_rank: 2, local_size: Some(4) }));
        assert_eq!(job_size(env(&srun)), Some(8));
        // srun -n 7 over 3 nodes: 3, 2, 2 tasks; this is the third node.
        let uneven =
            [("SLURM_LOCALID", "1"), ("SLURM_NODEID", "2"), ("SLURM_STEP_TASKS_PER_NODE", "3,2(x2)")];
        assert_eq!(placement(env(&uneven)), Some(Placement { local_rank: 1, local_size: Some(2) }));
        let job_only = [("SLURM_LOCALID", "0"), ("SLURM_NODEID", "0"), ("SLURM_TASKS_PER_NODE", "4(x2)")];
        assert_eq!(placement(env(&job_only)), Some(Placement { local_rank: 0, local_size: Some(4) }));
        // Open MPI's own variables win over Slurm's (mpirun inside an allocation).
        let both =
            [("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS_PER_NODE", "1")];
        assert_eq!(placement(env(&both)), Some(Placement { local_rank: 1, local_size: None }));
        assert_eq!(placement(env(&[("PMIX_RANK", "0")])), None);
        assert_eq!(placement(env(&[])), None);
    }

    #[test]
    fn slurm_task_lists_that_do_not_read_give_no_size() {
        assert_eq!(slurm_tasks_per_node("2(x3),1"), Some(vec![2, 2, 2, 1]));
        for bad in ["", "x", "2(x", "2(x3", "2(3)", "-1", "2(x99999999999)"] {
            assert_eq!(slurm_tasks_per_node(bad), None, "{bad:?}");
        }
        let past_the_list =
            [("SLURM_LOCALID", "0"), ("SLURM_NODEID", "5"), ("SLURM_TASKS_PER_NODE", "2(x2)")];
        assert_eq!(placement(env(&past_the_list)), Some(Placement { local_rank: 0, local_size: None }));
        let unreadable = [("SLURM_LOCALID", "zero")];
        assert_eq!(placement(env(&unreadable)), None);
    }
}
