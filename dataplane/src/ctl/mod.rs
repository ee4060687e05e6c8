//! The workers' side of requests from the control plane that need a
//! worker's private state: connection-table dumps (`dump`). Later: state
//! sync events and installs (HA).

pub mod dump;
