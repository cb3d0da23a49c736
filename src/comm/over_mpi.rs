//! The communicator of a job launched by `mpirun` (Open MPI): one rank per process, on one
//! machine or many. A sum is reduced to rank 0 and broadcast from there, so that every rank
//! holds rank 0's bits (an all-reduce may add the parts in another order on each rank).

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, Equivalence, Root as _};

use super::{CommError, Communicator};

/// MPI's world communicator; MPI ends when it is dropped.
pub struct Mpi {
    // The universe must outlive the communicator: dropping it finalises MPI.
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI, or None when it was initialised before in this process.
    pub fn initialize() -> Option<Self> {
        let universe = mpi::initialize()?;
        Some(Self { world: universe.world(), _universe: universe })
    }

    /// Ends every rank of the job with `status` (after a rank failed: the others would wait
    /// for it forever).
    pub fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }

    fn sum<T: Equivalence + Default + Clone>(&self, values: &mut [T]) {
        let root = self.world.process_at_rank(0);
        if self.world.rank() == 0 {
            let mut sum = vec![T::default(); values.len()];
            root.reduce_into_root(&*values, &mut sum[..], SystemOperation::sum());
            values.clone_from_slice(&sum);
        } else {
            root.reduce_into(&*values, SystemOperation::sum());
        }
        root.broadcast_into(values);
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<(), CommError> {
        self.sum(values);
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<(), CommError> {
        self.sum(values);
        Ok(())
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CommError> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
        Ok(())
    }
}
