//! The plant the modules run on.

pub mod stats;
