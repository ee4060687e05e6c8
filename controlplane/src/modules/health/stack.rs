//! The probes' network side: one smoltcp interface per data link, fed
//! with the frames the workers punt and drained of the frames it sends
//! (the control loop moves them through the ports).

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

/// A link the probes leave from.
#[derive(Debug, Clone)]
pub struct ProbeLink {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway for servers behind a router, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// Frames in and out of one smoltcp interface.
#[derive(Default)]
pub(super) struct Queues {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: Vec<Vec<u8>>,
}

pub(super) struct Rx(Vec<u8>);
pub(super) struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

pub(super) struct Stack {
    pub(super) iface: Interface,
    pub(super) dev: Queues,
    pub(super) sockets: SocketSet<'static>,
}

impl Stack {
    /// An interface with `l`'s MAC, self IP and default gateway.
    pub(super) fn new(l: &ProbeLink, now: Instant) -> Stack {
        let mut dev = Queues::default();
        let cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(l.mac)));
        let mut iface = Interface::new(cfg, &mut dev, smol_now(now, now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(l.address), l.prefix_len));
        });
        if let Some(gw) = l.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        Stack { iface, dev, sockets: SocketSet::new(Vec::new()) }
    }
}

pub(super) fn smol_now(epoch: Instant, now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.duration_since(epoch).as_micros() as i64)
}
