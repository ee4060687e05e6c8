//! The VRRP advert parser as a fuzz target: the frame checks of RFC 5798
//! §7.1 (`modules::vrrp::frames::receive`, over the wire parser
//! `wire::vrrp`), then an instance's own checks and its state machine.

use crate::config::Vrrp as VrrpConfig;
use crate::modules::vrrp::frames;
use crate::modules::vrrp::instance::Instance;
use furiwake_dataplane::wire::EthernetAddress;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// The instances each accepted advert is offered to: v3 at 100 ms, v2
/// with a password, and the address owner (priority 255), all on VRID 51
/// for 192.0.2.100.
fn configs() -> &'static [VrrpConfig] {
    static CONFIGS: OnceLock<Vec<VrrpConfig>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = "name = \"o\"\ninterface = \"outside\"\nvrid = 51\naddresses = [\"192.0.2.100\"]\n";
        ["priority = 200\nadvert_interval_ms = 100\n", "version = 2\nauth_password = \"secret\"\n", "priority = 255\n"]
            .iter()
            .filter_map(|extra| toml::from_str(&format!("{base}{extra}")).ok())
            .collect()
    })
}

/// A frame's bytes as punted, then with its IPv4 and VRRP checksums made
/// right (so that mutations reach past them): `is_vrrp` and `receive`
/// never panic; an accepted advert has a non-zero interval and, built
/// again from what was read, is read back the same; offered to each
/// instance (a backup and a master of each), the checks and the state
/// machine never panic, and the address owner stays master.
pub fn vrrp(data: &[u8]) -> Result<(), String> {
    one(data)?;
    let mut fixed = data.to_vec();
    if with_checksums(&mut fixed).is_some() {
        one(&fixed)?;
    }
    Ok(())
}

/// Fills the IPv4 header's and the advert's checksums in place, when the
/// frame parses that far.
fn with_checksums(frame: &mut [u8]) -> Option<()> {
    use furiwake_dataplane::wire::ipv4::Ipv4Packet;
    use furiwake_dataplane::wire::vrrp::VrrpPacket;
    let l3 = furiwake_dataplane::wire::ethernet::parse_l2(frame).ok()?.l3_offset;
    let mut ip = Ipv4Packet::new_checked(frame.get_mut(l3..)?).ok()?;
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    VrrpPacket::new_checked(ip.payload_mut()).ok()?.fill_checksum(src, dst);
    Some(())
}

fn one(data: &[u8]) -> Result<(), String> {
    let _ = frames::is_vrrp(data);
    let Ok(r) = frames::receive(data) else { return Ok(()) };
    if r.repr.interval_cs == 0 {
        return Err(format!("an interval of 0 accepted: {r:?}"));
    }
    let again = frames::advert_frame(r.src_mac, frames::MULTICAST_MAC, r.src, r.dst, &r.repr);
    match frames::receive(&again) {
        Ok(back) if back == r => {}
        other => return Err(format!("{r:?} built again reads back as {other:?}")),
    }
    let me = Ipv4Addr::new(192, 0, 2, 3);
    for cfg in configs() {
        for as_master in [false, true] {
            let mut i = Instance::new(cfg.clone(), 0, me, EthernetAddress([0, 0, 0x5e, 0, 1, 51]));
            i.startup(0, &mut Vec::new());
            if as_master {
                i.tick(10_000, false, &mut Vec::new());
            }
            if r.src == me || i.check_advert(r.src, &r.repr).is_err() {
                continue;
            }
            let mut out = Vec::new();
            i.advert_in(r.repr.priority, r.repr.interval_cs, r.src, 10_010, false, &mut out);
            i.tick(10_020, false, &mut out);
            if i.effective == 255 && !i.is_master() {
                return Err(format!("the owner left mastership on {r:?}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::wire::vrrp::{VrrpRepr, MULTICAST};

    /// Adverts of both versions, every kind of priority, matching and not,
    /// and 30,000 byte mutations of them (a xorshift, so the run is the
    /// same every time): the target's invariants hold on all.
    #[test]
    fn adverts_and_their_mutations_keep_the_invariants() {
        let vip = Ipv4Addr::new(192, 0, 2, 100);
        let mut seeds = Vec::new();
        for (version, password) in [(3u8, None), (2, Some(*b"secret\0\0")), (2, Some(*b"other\0\0\0"))] {
            for priority in [0u8, 1, 100, 200, 254, 255] {
                for addresses in [vec![vip], vec![Ipv4Addr::new(192, 0, 2, 101)], vec![vip, vip], vec![]] {
                    let r = VrrpRepr { version, vrid: 51, priority, interval_cs: 100, addresses, password };
                    seeds.push(frames::advert_frame(EthernetAddress([2, 0, 0, 0, 0, 4]), frames::MULTICAST_MAC, Ipv4Addr::new(192, 0, 2, 4), MULTICAST, &r));
                }
            }
        }
        for s in &seeds {
            assert!(frames::receive(s).is_ok());
            vrrp(s).unwrap();
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..30_000usize {
            let mut f = seeds[n % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % f.len();
                f[at] ^= 1 << (next() % 8);
            }
            if next() % 8 == 0 {
                f.truncate((next() as usize) % f.len());
            }
            vrrp(&f).unwrap_or_else(|e| panic!("{e}: {f:02x?}"));
        }
    }
}
