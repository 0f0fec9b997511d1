//! Who the client is, for limits kept per IP.
//!
//! The peer address is the client unless the peer is a reverse proxy listed
//! in `DUET_TRUSTED_PROXIES`. Then `X-Forwarded-For` is read from the right
//! (each proxy appends the address it saw), skipping trusted proxies: the
//! first address that is not one is the client. Entries further left were
//! written by the client itself and prove nothing.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::http::HeaderMap;
use poem::{FromRequest, Request, RequestBody};

use crate::AppContext;

/// Parses one `DUET_TRUSTED_PROXIES` entry: an address or a CIDR block.
pub fn parse_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{entry}` is neither an IP address nor a CIDR block"))
}

/// The client's address, given the peer's and the request's headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    let hops: Vec<&str> = forwarded.collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            // Garbage where an address should be: the last good hop is the client.
            Err(_) => break,
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address, as an extractor (for handlers that limit per IP).
/// `None` only for a request that did not come over TCP (tests calling an
/// endpoint directly).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl<'a> FromRequest<'a> for ClientIp {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(ClientIp(client_ip(req)))
    }
}

/// The client's address of `req` under the process's `DUET_TRUSTED_PROXIES`.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip();
    let trusted = req.data::<AppContext>().map(|ctx| ctx.settings.trusted_proxies.as_slice()).unwrap_or_default();
    Some(resolve(peer, req.headers(), trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let trusted = [parse_proxy("10.0.0.0/8").unwrap(), parse_proxy("192.168.1.1").unwrap()];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // Not a proxy: its header is ignored.
        assert_eq!(resolve(stranger, &headers("1.1.1.1"), &trusted), stranger);
        // A proxy: the right-most untrusted hop, whatever the client wrote to its left.
        assert_eq!(resolve(peer, &headers("6.6.6.6, 198.51.100.7, 192.168.1.1"), &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
        // Only proxies, or no header: the left-most proxy seen.
        assert_eq!(resolve(peer, &headers("10.9.9.9"), &trusted), "10.9.9.9".parse::<IpAddr>().unwrap());
        assert_eq!(resolve(peer, &HeaderMap::new(), &trusted), peer);
        // Garbage stops the walk.
        assert_eq!(resolve(peer, &headers("nonsense"), &trusted), peer);
        assert_eq!(
            resolve("::ffff:10.0.0.1".parse().unwrap(), &headers("::ffff:198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn proxies_are_addresses_or_blocks() {
        assert!(parse_proxy("10.0.0.1").is_ok());
        assert!(parse_proxy(" fd00::/8 ").is_ok());
        assert!(parse_proxy("proxy.local").unwrap_err().contains("proxy.local"));
    }
}
