//! The operator console (README, "Console"): a line-based CLI on a local
//! UNIX socket (`furiwake console`) and on stdin/stdout or a serial device.
//!
//! - `command`: the language — parsing, help, completion, the socket's
//!   framing. Pure, unit-tested.
//! - `server`: the appliance's non-blocking socket and device I/O, polled
//!   from the control loop.
//! - `client`: `furiwake console`, with rustyline.
//! - `admin`: the operator's enable/disable/drain state of pool members.
//! - `stats`: rates from successive counter samples.
//!
//! The commands themselves run on the control lcore with the appliance's
//! state at hand: `appliance/console_exec` (in `console/exec.rs`).

pub mod client;
pub mod command;
pub mod server;
