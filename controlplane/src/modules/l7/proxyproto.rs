//! The PROXY protocol header (HAProxy's specification, "The PROXY
//! protocol", versions 1 and 2): what a connection to a server starts
//! with so the server learns the client's address and the address it
//! reached.

use std::net::SocketAddrV4;

/// Version 2's signature (§2.2).
const SIG: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/// The header of version `v` (1 or 2) for a TCP connection from `client`
/// to `dest` (the VIP).
pub fn header(v: u8, client: SocketAddrV4, dest: SocketAddrV4) -> Vec<u8> {
    if v == 1 {
        // §2.1: "PROXY TCP4 SRC DST SPORT DPORT\r\n".
        return format!("PROXY TCP4 {} {} {} {}\r\n", client.ip(), dest.ip(), client.port(), dest.port()).into_bytes();
    }
    let mut h = Vec::with_capacity(28);
    h.extend_from_slice(&SIG);
    // Version 2, command PROXY; AF_INET over STREAM; 12 bytes of addresses.
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client.ip().octets());
    h.extend_from_slice(&dest.ip().octets());
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&dest.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_carry_the_addresses_as_the_specification_lays_them_out() {
        let c: SocketAddrV4 = "192.0.2.10:40000".parse().unwrap();
        let d: SocketAddrV4 = "192.0.2.100:443".parse().unwrap();
        assert_eq!(header(1, c, d), b"PROXY TCP4 192.0.2.10 192.0.2.100 40000 443\r\n");
        let v2 = header(2, c, d);
        assert_eq!(v2.len(), 28);
        assert_eq!(&v2[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&v2[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&v2[16..20], &[192, 0, 2, 10]);
        assert_eq!(&v2[20..24], &[192, 0, 2, 100]);
        assert_eq!(&v2[24..28], &[0x9c, 0x40, 0x01, 0xbb]);
    }
}
