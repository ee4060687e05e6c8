//! The workers' side of requests from the control plane that need a
//! worker's private state: connection-table dumps (`dump`) and connection
//! state sync with the HA peer (`events`: the records, their rings, the
//! bulk-walk requests).

pub mod dump;
pub mod events;
