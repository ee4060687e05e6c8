//! Running closures on EAL worker lcores (`rte_eal_remote_launch`).

use crate::error::{check, Result};
use std::ffi::c_void;

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, received once.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    // A panic must not unwind into C.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

/// A closure running on a worker lcore.
#[derive(Debug)]
#[must_use = "join the lcore before stopping ports"]
pub struct LcoreHandle {
    id: u32,
}

/// Runs `f` on worker lcore `lcore`, which must be idle.
pub fn launch<F>(lcore: u32, f: F) -> Result<LcoreHandle>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut c_void;
    // SAFETY: trampoline takes ownership of arg exactly once if the launch
    // succeeds.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if let Err(e) = check(ret, "rte_eal_remote_launch") {
        // SAFETY: the launch failed, so the job was not taken.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(e);
    }
    Ok(LcoreHandle { id: lcore })
}

impl LcoreHandle {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits for the closure to return and gives its value.
    pub fn join(self) -> i32 {
        // SAFETY: waits on an lcore we launched.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.id) }
    }
}

/// The lcore id of the calling thread, `None` for non-EAL threads.
pub fn current() -> Option<u32> {
    // SAFETY: reads a per-thread variable.
    let id = unsafe { dpdk_sys::fw_lcore_id() };
    (id < dpdk_sys::RTE_MAX_LCORE).then_some(id)
}
