//! From an admitted target to a connected upstream socket: resolve on the
//! host (pinned names first, then the system resolver), judge every address
//! (`address::check`), and connect to the first allowed one that answers,
//! in the resolver's order.
//!
//! The socket is connected to exactly the address that was judged, so a
//! name that resolves differently a moment later (DNS rebinding) changes
//! nothing: there is no second resolution.
//!
//! Must never: connect to an address it has not checked, or resolve twice.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use crate::address;
use crate::host::{Host, Target};
use crate::policy::Policy;
use crate::record::{Reason, Refusal};

/// At most this many addresses of one name are judged and tried.
const MAX_ADDRESSES: usize = 16;

/// Resolves `target`'s host, without checking anything.
async fn resolve(target: &Target, policy: &Policy) -> Result<Vec<IpAddr>, Refusal> {
    let name = match &target.host {
        Host::Ip(ip) => return Ok(vec![*ip]),
        Host::Name(name) => name,
    };
    if let Some(pinned) = policy.pinned.get(name) {
        return Ok(pinned.clone());
    }
    let timeout = policy.limits.connect_timeout;
    let lookup = tokio::net::lookup_host((name.as_str(), target.port));
    let found = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => {
            return Err(Refusal::new(
                Reason::ConnectTimeout,
                format!("resolving {name} took longer than {} ms", timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            return Err(Refusal::new(
                Reason::ResolveFailed,
                format!("{name} did not resolve: {e}"),
            ));
        }
        Ok(Ok(found)) => found,
    };
    let mut addrs: Vec<IpAddr> = Vec::new();
    for a in found {
        if !addrs.contains(&a.ip()) {
            addrs.push(a.ip());
        }
    }
    if addrs.is_empty() {
        return Err(Refusal::new(
            Reason::ResolveFailed,
            format!("{name} has no address"),
        ));
    }
    Ok(addrs)
}

/// Resolves, judges and connects. On success, the socket and the address
/// it is connected to.
pub(crate) async fn open(target: &Target, policy: &Policy) -> Result<(TcpStream, SocketAddr), Refusal> {
    open_checked(target, policy, false).await
}

/// [`open`], and with `opened_only` an address is allowed only inside a
/// range the operator opened (`allowed_cidrs`): how Warden's own client
/// keeps plain `http://` off the public internet.
pub(crate) async fn open_checked(
    target: &Target,
    policy: &Policy,
    opened_only: bool,
) -> Result<(TcpStream, SocketAddr), Refusal> {
    let mut addrs = resolve(target, policy).await?;
    addrs.truncate(MAX_ADDRESSES);
    let host_addrs = address::host_addresses().map_err(|e| {
        Refusal::new(
            Reason::Internal,
            format!("could not list this host's addresses to refuse them: {e}"),
        )
    })?;
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for ip in addrs {
        match address::check(ip, &policy.allowed_cidrs, &host_addrs) {
            Ok(ip) if opened_only && !policy.allowed_cidrs.iter().any(|c| c.contains(ip)) => {
                refused.push(Refusal::new(
                    Reason::UnsupportedScheme,
                    format!(
                        "{ip} is a public address, and plain http goes only to addresses the operator \
                         opened; use https"
                    ),
                ))
            }
            Ok(ip) => allowed.push(ip),
            Err(r) => refused.push(r),
        }
    }
    if allowed.is_empty() {
        if refused.is_empty() {
            return Err(Refusal::new(
                Reason::ResolveFailed,
                format!("{} has no address", target.host),
            ));
        }
        let first = refused.remove(0);
        return Err(match &target.host {
            Host::Ip(_) => first,
            Host::Name(name) if refused.is_empty() => {
                Refusal::new(first.reason, format!("{name}: {}", first.message))
            }
            Host::Name(name) => Refusal::new(
                first.reason,
                format!(
                    "{name}: {} (and {} more refused addresses)",
                    first.message,
                    refused.len()
                ),
            ),
        });
    }
    let timeout = policy.limits.connect_timeout;
    let mut last: Option<(Reason, String)> = None;
    for ip in allowed {
        let addr = SocketAddr::new(ip, target.port);
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(e)) => last = Some((Reason::ConnectFailed, describe(addr, &e))),
            Err(_) => {
                last = Some((
                    Reason::ConnectTimeout,
                    format!("{addr} did not answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }
    let (reason, message) = last.unwrap_or((Reason::ConnectFailed, "no address to try".into()));
    Err(Refusal::new(
        reason,
        format!("could not reach {target}: {message}"),
    ))
}

fn describe(addr: SocketAddr, e: &io::Error) -> String {
    format!("{addr}: {e}")
}
