//! EAL initialisation. DPDK allows one `rte_eal_init` per process; the
//! first call's outcome is kept and returned to every later caller.

use crate::error::{Error, Result};
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// Proof that the EAL is initialised in this process.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<std::result::Result<Eal, Error>> = OnceLock::new();

impl Eal {
    /// Initialises the EAL with `args` (without a program name) on the
    /// first call; later calls return the first outcome and ignore `args`.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<&'static Eal> {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        EAL.get_or_init(|| Self::init_once(args)).as_ref().map_err(Clone::clone)
    }

    /// The EAL of this process, if `init` succeeded.
    pub fn get() -> Option<&'static Eal> {
        EAL.get().and_then(|r| r.as_ref().ok())
    }

    fn init_once(args: Vec<String>) -> Result<Eal> {
        let mut argv_owned = vec![CString::new("furiwake").map_err(|e| Error::Usage(e.to_string()))?];
        for a in &args {
            argv_owned.push(CString::new(a.as_str()).map_err(|_| Error::Usage(format!("EAL argument {a:?} holds a NUL byte")))?);
        }
        // EAL keeps pointers into argv (e.g. for --vdev names); the strings
        // live for the process.
        let argv_owned: &'static [CString] = Box::leak(argv_owned.into_boxed_slice());
        let mut argv: Vec<*mut c_char> = argv_owned.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv is a NULL-terminated array of valid C strings that
        // lives for the rest of the process; argc excludes the NULL.
        let ret = unsafe { dpdk_sys::rte_eal_init((argv.len() - 1) as i32, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::last("rte_eal_init"));
        }
        crate::mbuf::register_punt_stamp();
        Ok(Eal { args })
    }

    /// The arguments the EAL was initialised with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The lcore the EAL runs the calling (main) thread on.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: getter of an EAL global.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Enabled lcores other than the main one, in order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: iterates EAL's lcore table; RTE_MAX_LCORE ends it.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// Number of ethdev ports the EAL probed.
    pub fn port_count(&self) -> u16 {
        // SAFETY: getter over the ethdev table.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// Lets `dpdk-dumpcap` and `dpdk-pdump` (secondary processes with the
    /// same `--file-prefix`) capture this process's ports. Secondaries can
    /// only attach when this process runs on hugepages (not `--no-huge`).
    pub fn enable_capture(&self) -> Result<()> {
        // SAFETY: called after rte_eal_init, on the main lcore; registers
        // the multi-process handlers pdump needs.
        let ret = unsafe { dpdk_sys::rte_pdump_init() };
        if ret < 0 {
            return Err(Error::last("rte_pdump_init"));
        }
        Ok(())
    }

    /// Undoes `enable_capture`, before `cleanup`.
    pub fn disable_capture(&self) {
        // SAFETY: pairs with rte_pdump_init; harmless when it was not.
        unsafe { dpdk_sys::rte_pdump_uninit() };
    }

    /// True when the EAL runs without hugepages (`--no-huge`).
    pub fn no_huge(&self) -> bool {
        self.args.iter().any(|a| a == "--no-huge")
    }

    /// Releases EAL resources. Call once, at exit, after every port is
    /// closed and every lcore has returned.
    pub fn cleanup(&self) {
        // SAFETY: documented to be called once at the end of the process;
        // callers stop ports and lcores first.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}
