//! A flood generator for the defence tests: spoofed TCP SYNs, UDP
//! datagrams or VRRP adverts (IP protocol 112, TTL 64: what anyone on the
//! Internet can send) at one address and port, from every address of a /24 and
//! random ports, through a raw IPv4 socket (`IP_HDRINCL`) in batches of
//! `sendmmsg`, for a bounded time. Prints how many it sent and the rate.
//! `--proto synack` sends SYN-ACKs with random sequence and ACK numbers
//! (blind answers to a probe the box may have in flight).
//!
//! `flood --dst 192.0.2.100 --dport 80 --src 203.0.113.0 --proto tcp
//! --secs 20 [--pps N] [--host H] [--sport P] [--dports A-B]` (run inside
//! the test's namespace; the sources stay within the documentation
//! prefixes; with `--host`, every packet from that one address of the
//! /24; with `--sport`, from that port; with `--dports`, to a random port
//! of the range rather than `--dport`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BATCH: usize = 256;

fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter().position(|a| a == key).and_then(|i| args.get(i + 1)).cloned()
}

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A VRRPv3 advert (RFC 5798 §5.1): vrid 51, priority 255, one address.
const VRRP: [u8; 12] = [0x31, 51, 255, 1, 0, 100, 0, 0, 192, 0, 2, 100];

/// `proto` of a SYN-ACK (TCP with SYN and ACK set, a random ACK number).
const SYNACK: u8 = 0xfe;

/// One packet from `src:sport`.
fn packet(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8, seq: u32) -> usize {
    let synack = proto == SYNACK;
    let proto = if synack { 6 } else { proto };
    let tcp = proto == 6;
    if proto == 112 {
        return vrrp(buf, src, dst, seq);
    }
    let l4 = if tcp { 20 } else { 8 + 16 };
    let total = 20 + l4;
    buf[..total].fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = if tcp { 6 } else { 17 };
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&buf[..20], 0);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
    let seg = &mut buf[20..total];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    if tcp {
        seg[4..8].copy_from_slice(&seq.to_be_bytes());
        seg[12] = 0x50;
        seg[13] = if synack { 0x12 } else { 0x02 };
        if synack {
            seg[8..12].copy_from_slice(&seq.rotate_left(13).to_be_bytes());
        }
        seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
    } else {
        seg[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
        seg[8..].copy_from_slice(b"flood flood fl..");
    }
    let s = src.octets();
    let d = dst.octets();
    let ps = u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + l4 as u32;
    let c = checksum(seg, ps);
    let at = if tcp { 16 } else { 6 };
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    total
}

/// A protocol-112 packet with TTL 64 and a valid advert checksum.
fn vrrp(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, seq: u32) -> usize {
    let total = 20 + VRRP.len();
    buf[..total].fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = 112;
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&buf[..20], 0);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
    buf[20..total].copy_from_slice(&VRRP);
    let (s, d) = (src.octets(), dst.octets());
    let ps = u32::from(u16::from_be_bytes([s[0], s[1]])) + u32::from(u16::from_be_bytes([s[2], s[3]])) + u32::from(u16::from_be_bytes([d[0], d[1]])) + u32::from(u16::from_be_bytes([d[2], d[3]])) + 112 + VRRP.len() as u32;
    let c = checksum(&buf[20..total], ps);
    buf[26..28].copy_from_slice(&c.to_be_bytes());
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dst: Ipv4Addr = arg(&args, "--dst").and_then(|a| a.parse().ok()).expect("--dst IP");
    let dport: u16 = arg(&args, "--dport").and_then(|a| a.parse().ok()).expect("--dport N");
    let net: Ipv4Addr = arg(&args, "--src").and_then(|a| a.parse().ok()).expect("--src A.B.C.0 (a /24)");
    let proto: u8 = match arg(&args, "--proto").as_deref() {
        Some("udp") => 17,
        Some("vrrp") => 112,
        Some("synack") => SYNACK,
        _ => 6,
    };
    let fixed_sport: Option<u16> = arg(&args, "--sport").and_then(|a| a.parse().ok());
    let dports: Option<(u16, u16)> = arg(&args, "--dports").and_then(|a| {
        let (lo, hi) = a.split_once('-')?;
        Some((lo.parse().ok()?, hi.parse().ok()?))
    });
    let secs: f64 = arg(&args, "--secs").and_then(|a| a.parse::<f64>().ok()).unwrap_or(5.0).min(60.0);
    let pps: Option<f64> = arg(&args, "--pps").and_then(|a| a.parse().ok());
    let host: Option<u8> = arg(&args, "--host").and_then(|a| a.parse().ok());
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let mut bufs = vec![[0u8; 64]; BATCH];
    let mut lens = [0usize; BATCH];
    // SAFETY: sockaddr_in is plain data; zeroed is a valid value.
    let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    to.sin_family = libc::AF_INET as u16;
    to.sin_addr.s_addr = u32::from(dst).to_be();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut sent, mut failed) = (0u64, 0u64);
    let base = net.octets();
    while Instant::now() < end {
        for (b, len) in bufs.iter_mut().zip(lens.iter_mut()) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let src = Ipv4Addr::new(base[0], base[1], base[2], host.unwrap_or(1 + (rng % 254) as u8));
            let sport = fixed_sport.unwrap_or(1024 + ((rng >> 8) % 60000) as u16);
            let dport = match dports {
                Some((lo, hi)) if hi >= lo => lo + ((rng >> 40) % u64::from(hi - lo + 1)) as u16,
                _ => dport,
            };
            *len = packet(b, src, dst, sport, dport, proto, (rng >> 24) as u32);
        }
        let mut iov: Vec<libc::iovec> = bufs.iter_mut().zip(lens.iter()).map(|(b, l)| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: *l }).collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: msghdr is plain data; zeroed is valid, then filled.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&raw mut to).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `msgs` points at BATCH valid headers whose buffers live
        // until the call returns.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        } else {
            failed += 1;
            std::thread::sleep(Duration::from_micros(50));
        }
        if let Some(rate) = pps {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("flood: sent {sent} {} packets in {secs:.1} s ({:.0} pps; {failed} failed sends)", match proto {
        6 => "SYN",
        SYNACK => "SYN-ACK",
        17 => "UDP",
        _ => "VRRP",
    }, sent as f64 / secs);
}
