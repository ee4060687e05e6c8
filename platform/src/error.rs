//! Negative errno values from DPDK turned into typed errors.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{what}: invalid argument")]
    InvalidArgument { what: &'static str },
    #[error("{what}: no such device")]
    NoDevice { what: &'static str },
    #[error("{what}: out of memory")]
    NoMemory { what: &'static str },
    #[error("{what}: not supported by this device")]
    NotSupported { what: &'static str },
    #[error("{what}: busy")]
    Busy { what: &'static str },
    #[error("{what}: already done")]
    Already { what: &'static str },
    #[error("{what}: already exists")]
    Exists { what: &'static str },
    #[error("{what}: {}", Errno(*.errno))]
    Os { what: &'static str, errno: i32 },
    #[error("{0}")]
    Usage(String),
}

struct Errno(i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", std::io::Error::from_raw_os_error(self.0), self.0)
    }
}

impl Error {
    /// Maps a positive errno value.
    pub fn from_errno(errno: i32, what: &'static str) -> Self {
        match errno {
            libc_errno::EINVAL => Error::InvalidArgument { what },
            libc_errno::ENODEV => Error::NoDevice { what },
            libc_errno::ENOMEM | libc_errno::ENOBUFS | libc_errno::ENOSPC => Error::NoMemory { what },
            libc_errno::ENOTSUP => Error::NotSupported { what },
            libc_errno::EBUSY => Error::Busy { what },
            libc_errno::EALREADY => Error::Already { what },
            libc_errno::EEXIST => Error::Exists { what },
            errno => Error::Os { what, errno },
        }
    }

    /// The error DPDK left in `rte_errno`.
    pub fn last(what: &'static str) -> Self {
        // SAFETY: reads the calling thread's per-lcore rte_errno.
        Self::from_errno(unsafe { dpdk_sys::fw_errno() }, what)
    }
}

/// Turns a DPDK return code (negative errno on failure) into a `Result`.
pub(crate) fn check(ret: i32, what: &'static str) -> Result<i32> {
    if ret < 0 {
        Err(Error::from_errno(-ret, what))
    } else {
        Ok(ret)
    }
}

/// The few errno values DPDK returns, for Linux.
mod libc_errno {
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOMEM: i32 = 12;
    pub const ENOBUFS: i32 = 105;
    pub const EALREADY: i32 = 114;
    pub const ENOTSUP: i32 = 95; // == EOPNOTSUPP on Linux
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_errno_is_typed() {
        assert_eq!(check(-19, "probe"), Err(Error::NoDevice { what: "probe" }));
        assert_eq!(check(-22, "x"), Err(Error::InvalidArgument { what: "x" }));
        assert_eq!(check(3, "x"), Ok(3));
        let e = check(-5, "read").unwrap_err();
        assert!(e.to_string().starts_with("read: "), "{e}");
    }
}
