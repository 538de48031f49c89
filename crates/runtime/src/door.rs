//! The egress door of a box that may reach the network: a fresh network
//! namespace with only loopback up, the host's egress proxy serving a
//! listener inside it, allowed to a list of hosts (and, when an operator
//! says so, to private address ranges), and the environment that points the
//! box's programs at the proxy. The one copy for dependency-layer builds,
//! sessions and one-shot runs.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use warden_egress::{ConnectionRecord, PolicyError, ProxyHandle, Report};
use warden_jail::{BoxSpec, Egress, EgressNet, JailError, PROXY_PORT};

use crate::RuntimeError;

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
        Door::serve(Door::policy(hosts, allow_cidrs)?)
    }

    fn policy(hosts: &[String], allow_cidrs: &[String]) -> Result<warden_egress::Policy, DoorError> {
        let mut policy =
            warden_egress::Policy::new(hosts.iter().map(String::as_str)).map_err(DoorError::Hosts)?;
        for cidr in allow_cidrs {
            policy = policy.allow_cidr(cidr).map_err(DoorError::Cidr)?;
        }
        Ok(policy)
    }

    fn serve(policy: warden_egress::Policy) -> Result<Door, DoorError> {
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

    /// A door to what `net` grants.
    pub(crate) fn grant(net: &crate::Network) -> Result<Door, RuntimeError> {
        let channel = |e: DoorError| RuntimeError::Channel(std::io::Error::other(e.to_string()));
        let policy = Door::policy(&net.hosts, &net.allow_cidrs)
            .and_then(|p| {
                p.with_credentials(net.credentials.clone())
                    .map_err(DoorError::Hosts)
            })
            .map_err(channel)?;
        Door::serve(policy).map_err(channel)
    }

    /// Give `spec`'s box this door: its namespace, the proxy variables and
    /// the host's CA certificates (TLS is end to end through the proxy).
    pub(crate) fn fit(&self, spec: &mut BoxSpec) -> Result<(), RuntimeError> {
        spec.mounts
            .ro_binds
            .push(warden_jail::Bind::same("/etc/ssl/certs"));
        for (k, v) in self.env().into_iter().chain([(
            "NODE_EXTRA_CA_CERTS".to_owned(),
            crate::layers::HOST_CA_BUNDLE.to_owned(),
        )]) {
            spec.env.retain(|(key, _)| key.to_str() != Some(k.as_str()));
            spec.env.push((k.into(), v.into()));
        }
        spec.egress = Some(
            self.egress()
                .map_err(|e| RuntimeError::Channel(std::io::Error::other(e.to_string())))?,
        );
        Ok(())
    }

    /// The notable connections ([`notable`]) recorded after the one numbered `after`,
    /// once the connections open now have ended (waiting at most `wait`:
    /// a connection's record is written when it ends), and the number of
    /// the last record seen. For a box that serves several calls.
    pub(crate) fn notable_since(&self, after: u64, wait: Duration) -> (Vec<ConnectionRecord>, u64) {
        let deadline = Instant::now() + wait;
        while self.proxy.live() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = self.proxy.report();
        let last = report.connections.last().map_or(after, |c| c.id.max(after));
        (
            notable(report.connections.into_iter().filter(|c| c.id > after)),
            last,
        )
    }

    /// Connections this proxy has recorded or dropped over its life.
    pub(crate) fn recorded(&self) -> u64 {
        let r = self.proxy.report();
        r.connections.len() as u64 + r.dropped_records
    }

    /// Stop the proxy and return what it let through and refused.
    pub(crate) fn stop(self) -> Report {
        self.proxy.stop()
    }
}

/// The records a call keeps: connections the proxy refused, and those that
/// named a credential (whose use is audited).
pub(crate) fn notable(records: impl IntoIterator<Item = ConnectionRecord>) -> Vec<ConnectionRecord> {
    records
        .into_iter()
        .filter(|c| !c.allowed() || c.credential.is_some())
        .collect()
}
