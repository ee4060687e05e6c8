//! What the control plane shares with the workers, and how: the immutable
//! configuration `snapshot` published through `rcu`, the resolved
//! `neighbor` MACs, and the per-worker `counters` the control plane reads.
//! Every shared field says who writes and who reads it.

pub mod counters;
pub mod neighbor;
pub mod rcu;
pub mod snapshot;
