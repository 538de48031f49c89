//! The egress door of a box that may reach the network: a fresh network
//! namespace with only loopback up, the host's egress proxy serving a
//! listener inside it, allowed to a list of hosts (and, when an operator
//! says so, to private address ranges), and the environment that points the
//! box's programs at the proxy. The one copy for dependency-layer builds,
//! sessions and one-shot runs.

use std::net::TcpListener;

use warden_egress::{PolicyError, ProxyHandle, Report};
use warden_jail::{Egress, EgressNet, JailError, PROXY_PORT};

/// Why a door could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DoorError {
    /// An allow-list entry is unusable.
    #[error("{0}")]
    Hosts(#[source] PolicyError),
    /// An allowed address range is unusable.
    #[error("{0}")]
    Cidr(#[source] PolicyError),
    /// The namespace or the proxy could not be set up.
    #[error("setting up the egress proxy: {0}")]
    Setup(String),
}

impl From<JailError> for DoorError {
    fn from(e: JailError) -> Self {
        DoorError::Setup(e.to_string())
    }
}

/// A box's way out: its network namespace and the proxy serving it. Stop it
/// once the box is gone (dropping it stops the proxy too, without the
/// report).
pub(crate) struct Door {
    net: EgressNet,
    proxy: ProxyHandle,
}

impl Door {
    /// A door to `hosts` (`host[:port]`), and to the addresses in
    /// `allow_cidrs` although they are not public.
    pub(crate) fn open(hosts: &[String], allow_cidrs: &[String]) -> Result<Door, DoorError> {
        let mut policy =
            warden_egress::Policy::new(hosts.iter().map(String::as_str)).map_err(DoorError::Hosts)?;
        for cidr in allow_cidrs {
            policy = policy.allow_cidr(cidr).map_err(DoorError::Cidr)?;
        }
        let net = EgressNet::create(PROXY_PORT)?;
        let listener: TcpListener = net
            .listener
            .try_clone()
            .map_err(|e| DoorError::Setup(e.to_string()))?;
        let proxy = warden_egress::serve(listener, policy).map_err(|e| DoorError::Setup(e.to_string()))?;
        Ok(Door { net, proxy })
    }

    /// The proxy variables every program in the box reads.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}", self.net.port);
        ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"]
            .into_iter()
            .map(|k| (k.to_owned(), url.clone()))
            .collect()
    }

    /// What the box's spec needs to join the namespace.
    pub(crate) fn egress(&self) -> Result<Egress, DoorError> {
        Ok(Egress {
            netns: self
                .net
                .netns
                .try_clone()
                .map_err(|e| DoorError::Setup(e.to_string()))?,
            port: self.net.port,
        })
    }

    /// Stop the proxy and return what it let through and refused.
    pub(crate) fn stop(self) -> Report {
        self.proxy.stop()
    }
}
