//! The client address of a request, as the abuse limits count it.

use std::net::{IpAddr, Ipv4Addr};

use poem::Request;

use crate::{state::AppState, throttle::ClientAddress};

/// The peer's address, or the client a trusted proxy names in
/// `X-Forwarded-For`. A peer that is not an IP socket (none is, today) counts
/// as one shared client.
pub fn address(req: &Request, state: &AppState) -> ClientAddress {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    state.throttle.client(peer, forwarded)
}
