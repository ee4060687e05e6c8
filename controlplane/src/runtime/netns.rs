//! The appliance's own network namespace: where the kernel side of the
//! host link (the exception path's TAP) lives, with the addresses the
//! appliance's own stack serves and connects from, and where the L7
//! engine's threads open their sockets. A namespace the process made
//! (`unshare(CLONE_NEWNET)` on a short-lived thread: it moves only that
//! thread) and holds by a file descriptor, so nothing outside the
//! appliance routes through it and it goes with the process. An operator
//! can look inside with `nsenter --net=/proc/PID/fd/FD` (`path`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub struct Netns {
    fd: File,
}

/// The calling thread's network namespace.
fn current() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

/// Moves the calling thread into the namespace `fd` names.
fn enter_fd(fd: &File) -> io::Result<()> {
    // SAFETY: setns(2) on a descriptor we own; it changes only the calling
    // thread's namespace.
    let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Netns {
    /// A new, empty network namespace (only `lo`, down).
    pub fn create() -> io::Result<Netns> {
        let t = std::thread::Builder::new().name("fw-netns".into()).spawn(|| {
            // SAFETY: unshare(2) with a constant flag; it moves only this
            // thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            current()
        })?;
        let fd = t.join().map_err(|_| io::Error::other("the namespace thread panicked"))??;
        Ok(Netns { fd })
    }

    /// Runs `f` on the calling thread inside the namespace, then moves the
    /// thread back where it was. What `f` opens there (sockets, a TAP)
    /// stays there.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        /// Moves the thread back when dropped, `f` returning or unwinding.
        struct Back(File);
        impl Drop for Back {
            fn drop(&mut self) {
                if let Err(e) = enter_fd(&self.0) {
                    // A thread left in the wrong namespace would open the
                    // box's sockets there: nothing sane can follow.
                    log::error!("could not leave the appliance's network namespace: {e}");
                    std::process::abort();
                }
            }
        }
        let back = Back(current()?);
        enter_fd(&self.fd)?;
        let r = f();
        drop(back);
        Ok(r)
    }

    /// Moves the calling thread into the namespace for good (the L7
    /// engine's threads).
    pub fn enter(&self) -> io::Result<()> {
        enter_fd(&self.fd)
    }

    /// Where an operator finds it: `nsenter --net=PATH`.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// A second handle on it, for another module.
    pub fn try_clone(&self) -> io::Result<Netns> {
        Ok(Netns { fd: self.fd.try_clone()? })
    }
}
