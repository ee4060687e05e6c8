//! Per-worker connection table (being written).
