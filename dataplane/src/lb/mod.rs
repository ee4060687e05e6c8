//! Choosing a real server for a new connection: the schedules the control
//! plane computes and the workers walk (`sched`), Maglev tables
//! (`maglev`), the servers as the schedulers see them (`server`),
//! persistence records (`persist`), and the per-server loads the control
//! plane publishes (`loads`).

pub mod loads;
pub mod maglev;
pub mod persist;
pub mod sched;
pub mod server;

pub use loads::Loads;
pub use persist::{PersistKind, Persistence, PersistTable};
pub use sched::{available, Flow4, Group, HashKey, Members, Schedule, Scheduler};
pub use server::RealServer;
