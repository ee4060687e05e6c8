//! Just enough rtnetlink (RFC 3549; `linux/rtnetlink.h`) to set up the
//! kernel side of the host link: a link's flags and MTU, its IPv4
//! addresses, a default route through it. Each request is acknowledged
//! (`NLM_F_ACK`) and its error returned. The socket belongs to the network
//! namespace it was opened in, whichever thread uses it later.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;

pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

/// One route attribute: length, type, value, padded to 4.
fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

impl Rtnl {
    /// A route netlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        // SAFETY: socket(2) with constant arguments; the result is checked
        // and owned at once.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: a valid timeval and its size; a receive that never
        // returns would hang the control loop, so answers wait 2 s at most.
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const tv).cast(), std::mem::size_of::<libc::timeval>() as u32) };
        Ok(Rtnl { fd, seq: 1 })
    }

    /// Sets link `index` up or down, with or without ARP (`IFF_NOARP`: the
    /// kernel then sends every frame to the link's own MAC, which is what
    /// the workers take from a TAP), and its MTU.
    pub fn set_link(&mut self, index: u32, up: bool, noarp: bool, mtu: Option<u32>) -> io::Result<()> {
        let mut b = Vec::with_capacity(32);
        let flags = if up { libc::IFF_UP as u32 } else { 0 } | if noarp { libc::IFF_NOARP as u32 } else { 0 };
        let change = (libc::IFF_UP | libc::IFF_NOARP) as u32;
        b.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        b.extend_from_slice(&(index as i32).to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&change.to_ne_bytes());
        if let Some(m) = mtu {
            attr(&mut b, IFLA_MTU, &m.to_ne_bytes());
        }
        self.request(libc::RTM_NEWLINK, 0, &b)
    }

    /// Adds (or removes) `ip/prefix` on link `index`. Adding one that is
    /// there, or removing one that is not, succeeds.
    pub fn address(&mut self, add: bool, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, libc::RT_SCOPE_UNIVERSE]);
        b.extend_from_slice(&index.to_ne_bytes());
        attr(&mut b, IFA_LOCAL, &ip.octets());
        attr(&mut b, IFA_ADDRESS, &ip.octets());
        let r = match add {
            true => self.request(libc::RTM_NEWADDR, (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16, &b),
            false => self.request(libc::RTM_DELADDR, 0, &b),
        };
        match r {
            Err(e) if add && e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) if !add && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r,
        }
    }

    /// The default route: every destination on link `index`, on-link
    /// (scope link: no gateway to resolve).
    pub fn default_route(&mut self, index: u32) -> io::Result<()> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, libc::RT_TABLE_MAIN, libc::RTPROT_BOOT, libc::RT_SCOPE_LINK, libc::RTN_UNICAST]);
        // rtm_flags
        b.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut b, RTA_OIF, &index.to_ne_bytes());
        self.request(libc::RTM_NEWROUTE, (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16, &b)
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = NLMSG_HDRLEN + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16 | flags).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: sockaddr_nl is plain data; zeroed is the kernel's address.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `to` are valid for the lengths given.
        let sent = unsafe { libc::sendto(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0, (&raw const to).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0usize;
            let n = n as usize;
            while at + NLMSG_HDRLEN <= n {
                let h = &buf[at..];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let mty = u16::from_ne_bytes([h[4], h[5]]);
                let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if mlen < NLMSG_HDRLEN || at + mlen > n {
                    return Err(io::Error::other("rtnetlink: a truncated answer"));
                }
                if mty == NLMSG_ERROR && mseq == seq && mlen >= NLMSG_HDRLEN + 4 {
                    let err = i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
                    return if err == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-err)) };
                }
                at += mlen.next_multiple_of(4);
            }
        }
    }
}
