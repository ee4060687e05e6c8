//! Load balancing: the configuration compiled into the workers' snapshot.

pub mod admin;
pub mod build;
pub mod loads;
