//! The one way out of a box that is granted egress: a TCP listener on the
//! box's own loopback, held by the host.
//!
//! Such a box gets a fresh network namespace (not one from the pool) whose
//! only interface is loopback, brought up by the host. The host creates a
//! listening socket at `127.0.0.1:PORT` *inside* that namespace, from a
//! short-lived thread that joined it, then keeps the socket: connections the
//! box makes to it are accepted by the host process (and served by its egress
//! proxy, in the host's own network namespace). There is nothing else in
//! the namespace: no other interface, no route, no DNS. The box's seccomp
//! profile (`egress`) allows TCP stream sockets only (never raw, packet or
//! UDP ones), and landlock (ABI 4+) allows TCP `connect` to this one port and
//! no `bind`.
//!
//! The jail knows nothing of what the proxy does; it only builds the door.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::OwnedFd;

use crate::error::JailError;

/// The port of the proxy inside a box, by convention (`HTTP_PROXY` points at
/// `127.0.0.1:3128`).
pub const PROXY_PORT: u16 = 3128;

/// A network namespace for one box and the listener the host holds in it.
#[derive(Debug)]
pub struct EgressNet {
    /// The namespace (the box joins it at start).
    pub netns: OwnedFd,
    /// The proxy's listening socket at `127.0.0.1:port`, in that namespace.
    pub listener: TcpListener,
    /// The port.
    pub port: u16,
}

impl EgressNet {
    /// A new namespace with loopback up and a listener at
    /// `127.0.0.1:port`. Root only (it needs `CAP_NET_ADMIN` and
    /// `CAP_SYS_ADMIN`).
    pub fn create(port: u16) -> Result<EgressNet, JailError> {
        let fail = |step: &'static str| move |e: std::io::Error| JailError::Launch { step, source: e };
        let joined = std::thread::Builder::new()
            .name("warden-egress-ns".into())
            .spawn(move || -> Result<(OwnedFd, TcpListener), JailError> {
                // unshare moves only this thread; the namespace outlives it
                // through the descriptor and the socket.
                let os = |e: syscalls::Errno| std::io::Error::from_raw_os_error(e.into_raw());
                crate::sys::unshare(libc::CLONE_NEWNET)
                    .map_err(|e| fail("creating the box's network namespace")(os(e)))?;
                crate::sys::set_loopback_up().map_err(|e| fail("bringing up the box's loopback")(os(e)))?;
                let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
                    .map_err(fail("binding the egress listener in the box's namespace"))?;
                let netns: OwnedFd = File::open("/proc/thread-self/ns/net")
                    .map_err(fail("opening the box's network namespace"))?
                    .into();
                Ok((netns, listener))
            })
            .map_err(fail("starting the namespace thread"))?;
        let (netns, listener) = joined.join().map_err(|_| JailError::Launch {
            step: "the namespace thread",
            source: std::io::Error::other("panicked"),
        })??;
        Ok(EgressNet {
            netns,
            listener,
            port,
        })
    }
}

/// What a box spec carries to be granted egress: the namespace to join and
/// the port landlock lets it connect to.
#[derive(Debug)]
pub struct Egress {
    /// The namespace (from [`EgressNet::netns`]).
    pub netns: OwnedFd,
    /// The proxy's port.
    pub port: u16,
}
