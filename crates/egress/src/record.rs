//! What the proxy remembers of each connection, and why it refused or cut
//! one: the record format (defined once, stored as JSON by callers), the
//! refusal reasons, and the bounded list a proxy keeps.
//!
//! Must never: grow without bound, or let a count or a log line depend on
//! anything but a finished record.

use std::net::SocketAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Why the proxy refused a connection, or cut one it had allowed. The
/// snake_case name is the machine-readable form (records, metrics, the
/// `x-warden-egress-reason` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // What the box sent.
    /// The HTTP parser refused the request (bad request line or header).
    MalformedRequest,
    /// The request head is larger than `limits.max_header_bytes`.
    HeaderTooLarge,
    /// The request head did not arrive within `limits.header_timeout_ms`.
    HeaderTimeout,
    /// The box closed the connection without sending a request.
    NoRequest,
    /// An origin-form request (`GET /path`): meant for a server, not a proxy.
    OriginForm,
    /// The request target is not usable: no port on `CONNECT`, user info,
    /// an authority-form target on another method.
    BadTarget,
    /// An absolute-form request with a scheme other than `http` (`https`
    /// goes through `CONNECT`).
    UnsupportedScheme,
    /// The host is not a valid host name.
    InvalidHost,
    /// The host name is not ASCII.
    NonAsciiHost,
    // The policy.
    /// An IP literal (or a number a resolver reads as one) that the
    /// allow-list does not name.
    IpLiteral,
    /// The host is not on the allow-list.
    HostNotAllowed,
    /// The host is on the allow-list, but not with this port.
    PortNotAllowed,
    /// The box named a credential it does not hold, or one not bound to
    /// the target.
    CredentialNotAllowed,
    /// The token endpoint of an OAuth2 credential failed, timed out or
    /// answered something that is not a token: no request was sent with it.
    CredentialTokenFailed,
    // The address the host resolved to.
    /// A loopback address (127.0.0.0/8, ::1).
    Loopback,
    /// A private address (RFC 1918, CGNAT 100.64.0.0/10, ULA fc00::/7,
    /// local-use NAT64).
    Private,
    /// A link-local address (169.254.0.0/16 with cloud metadata, fe80::/10).
    LinkLocal,
    /// A multicast address; never allowed.
    Multicast,
    /// The unspecified address or "this network" (0.0.0.0/8, ::), which
    /// reaches the host itself; never allowed.
    Unspecified,
    /// The limited broadcast address; never allowed.
    Broadcast,
    /// A documentation, benchmarking, protocol-assignment, deprecated or
    /// unallocated range.
    Reserved,
    /// An address of one of the host's own interfaces.
    HostAddress,
    // Reaching the upstream.
    /// The name did not resolve.
    ResolveFailed,
    /// Every allowed address refused or failed the connection.
    ConnectFailed,
    /// Resolution or the connection took longer than
    /// `limits.connect_timeout_ms`.
    ConnectTimeout,
    /// The upstream failed during a forwarded request.
    UpstreamError,
    /// The TLS handshake the proxy made with the upstream failed (for a
    /// credential's `https://` request).
    TlsFailed,
    // Caps.
    /// `limits.max_concurrent` connections were already open.
    ConcurrencyCap,
    /// `limits.max_connections` connections were already served.
    ConnectionCap,
    /// `limits.max_bytes` were already transferred.
    ByteCap,
    /// No byte moved for `limits.idle_timeout_ms`.
    IdleTimeout,
    // The proxy itself.
    /// The proxy was stopped.
    Stopped,
    /// The proxy could not decide (for example, it could not list the
    /// host's addresses); it refuses rather than guess.
    Internal,
}

impl Reason {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            MalformedRequest => "malformed_request",
            HeaderTooLarge => "header_too_large",
            HeaderTimeout => "header_timeout",
            NoRequest => "no_request",
            OriginForm => "origin_form",
            BadTarget => "bad_target",
            UnsupportedScheme => "unsupported_scheme",
            InvalidHost => "invalid_host",
            NonAsciiHost => "non_ascii_host",
            IpLiteral => "ip_literal",
            HostNotAllowed => "host_not_allowed",
            PortNotAllowed => "port_not_allowed",
            CredentialNotAllowed => "credential_not_allowed",
            CredentialTokenFailed => "credential_token_failed",
            Loopback => "loopback",
            Private => "private",
            LinkLocal => "link_local",
            Multicast => "multicast",
            Unspecified => "unspecified",
            Broadcast => "broadcast",
            Reserved => "reserved",
            HostAddress => "host_address",
            ResolveFailed => "resolve_failed",
            ConnectFailed => "connect_failed",
            ConnectTimeout => "connect_timeout",
            UpstreamError => "upstream_error",
            TlsFailed => "tls_failed",
            ConcurrencyCap => "concurrency_cap",
            ConnectionCap => "connection_cap",
            ByteCap => "byte_cap",
            IdleTimeout => "idle_timeout",
            Stopped => "stopped",
            Internal => "internal",
        }
    }

    /// The HTTP status the box gets when the proxy refuses with this reason.
    pub fn status(self) -> u16 {
        use Reason::*;
        match self {
            MalformedRequest | NoRequest | OriginForm | BadTarget | UnsupportedScheme | InvalidHost
            | NonAsciiHost => 400,
            HeaderTimeout => 408,
            HeaderTooLarge => 431,
            IpLiteral | HostNotAllowed | PortNotAllowed | CredentialNotAllowed | Loopback | Private
            | LinkLocal | Multicast | Unspecified | Broadcast | Reserved | HostAddress => 403,
            ConcurrencyCap | ConnectionCap | ByteCap => 429,
            ResolveFailed | ConnectFailed | UpstreamError | TlsFailed | CredentialTokenFailed => 502,
            ConnectTimeout | IdleTimeout => 504,
            Stopped => 503,
            Internal => 500,
        }
    }
}

/// A refusal: the reason and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// How the proxy judged a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The box got its upstream connection (`address` says which).
    Allowed {
        /// Set when the connection did not end by a peer closing it: the
        /// proxy cut it (a cap, idle, stopped) or the upstream failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cut: Option<Cut>,
    },
    /// The box got no upstream connection.
    Refused {
        /// Machine-readable reason.
        reason: Reason,
        /// What happened, for a person.
        message: String,
    },
}

/// Why an allowed connection ended early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Machine-readable reason.
    pub reason: Reason,
    /// What happened, for a person.
    pub message: String,
}

/// One connection a box made to its proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// Sequence number within this proxy, from 1, in accept order.
    pub id: u64,
    /// When the proxy accepted it, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// From accept to the last byte, in milliseconds.
    pub duration_ms: f64,
    /// The request's method (`CONNECT`, `GET`, …), when one was read.
    pub method: Option<String>,
    /// The host asked for, normalized (an IP literal without brackets),
    /// when a valid one was read.
    pub host: Option<String>,
    /// The port asked for (the scheme's default when the request had none).
    pub port: Option<u16>,
    /// The address the proxy checked and connected to.
    pub address: Option<SocketAddr>,
    /// The credential the box named, when it named one (never its secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Bytes the proxy sent to the upstream.
    pub bytes_up: u64,
    /// Bytes the proxy received from the upstream.
    pub bytes_down: u64,
    /// Allowed or refused, with the reason.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl ConnectionRecord {
    /// The refusal or cut reason, if any.
    pub fn reason(&self) -> Option<Reason> {
        match &self.verdict {
            Verdict::Allowed { cut } => cut.as_ref().map(|c| c.reason),
            Verdict::Refused { reason, .. } => Some(*reason),
        }
    }

    /// True if the box got its upstream connection.
    pub fn allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allowed { .. })
    }
}

/// What a proxy recorded: every connection in accept order (up to
/// `limits.max_records`), and how many were not kept beyond that.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The finished connections, ordered by `id`.
    pub connections: Vec<ConnectionRecord>,
    /// Connections finished after `limits.max_records` were kept; they are
    /// still counted in the metrics.
    pub dropped_records: u64,
}

impl Report {
    /// Bytes sent to upstreams, summed over the kept records.
    pub fn bytes_up(&self) -> u64 {
        self.connections.iter().map(|c| c.bytes_up).sum()
    }

    /// Bytes received from upstreams, summed over the kept records.
    pub fn bytes_down(&self) -> u64 {
        self.connections.iter().map(|c| c.bytes_down).sum()
    }
}

/// The bounded list of a proxy's finished records.
pub(crate) struct Recorder {
    max: usize,
    inner: Mutex<Report>,
}

impl Recorder {
    pub fn new(max: usize) -> Recorder {
        Recorder {
            max,
            inner: Mutex::new(Report::default()),
        }
    }

    /// Counts a finished connection in the metrics and keeps it if there is
    /// room.
    pub fn push(&self, record: ConnectionRecord) {
        count(&record);
        let mut report = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if report.connections.len() < self.max {
            let at = report.connections.partition_point(|c| c.id < record.id);
            report.connections.insert(at, record);
        } else {
            report.dropped_records += 1;
        }
    }

    /// A copy of what is recorded so far.
    pub fn snapshot(&self) -> Report {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts a finished connection in the metrics (and logs it at debug):
/// every proxy's, and every hop of Warden's own client.
pub(crate) fn count(record: &ConnectionRecord) {
    let (verdict, reason) = match &record.verdict {
        Verdict::Allowed { cut } => ("allowed", cut.as_ref().map_or("none", |c| c.reason.as_str())),
        Verdict::Refused { reason, .. } => ("refused", reason.as_str()),
    };
    metrics::counter!("warden_egress_connections_total", "verdict" => verdict, "reason" => reason)
        .increment(1);
    if record.bytes_up > 0 {
        metrics::counter!("warden_egress_bytes_total", "direction" => "up").increment(record.bytes_up);
    }
    if record.bytes_down > 0 {
        metrics::counter!("warden_egress_bytes_total", "direction" => "down").increment(record.bytes_down);
    }
    tracing::debug!(
        id = record.id,
        host = record.host.as_deref().unwrap_or("-"),
        port = record.port.unwrap_or(0),
        verdict,
        reason,
        "egress connection"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: Verdict) -> ConnectionRecord {
        ConnectionRecord {
            id: 7,
            started_at: 1_700_000_000_000,
            duration_ms: 1.5,
            method: Some("CONNECT".into()),
            host: Some("pypi.org".into()),
            port: Some(443),
            address: Some("151.101.0.223:443".parse().unwrap()),
            credential: None,
            bytes_up: 10,
            bytes_down: 20,
            verdict,
        }
    }

    #[test]
    fn records_are_flat_json_and_read_back() {
        let refused = record(Verdict::Refused {
            reason: Reason::LinkLocal,
            message: "no".into(),
        });
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["verdict"], "refused");
        assert_eq!(json["reason"], "link_local");
        assert_eq!(json["address"], "151.101.0.223:443");
        assert_eq!(serde_json::from_value::<ConnectionRecord>(json).unwrap(), refused);

        let clean = record(Verdict::Allowed { cut: None });
        let json = serde_json::to_value(&clean).unwrap();
        assert_eq!(json["verdict"], "allowed");
        assert!(json.get("cut").is_none());
        assert_eq!(serde_json::from_value::<ConnectionRecord>(json).unwrap(), clean);

        let cut = record(Verdict::Allowed {
            cut: Some(Cut {
                reason: Reason::IdleTimeout,
                message: "idle".into(),
            }),
        });
        let json = serde_json::to_value(&cut).unwrap();
        assert_eq!(json["cut"]["reason"], "idle_timeout");
        assert_eq!(serde_json::from_value::<ConnectionRecord>(json).unwrap(), cut);
    }

    #[test]
    fn reason_names_match_their_serde_form() {
        use Reason::*;
        for r in [
            MalformedRequest,
            HeaderTooLarge,
            HeaderTimeout,
            NoRequest,
            OriginForm,
            BadTarget,
            UnsupportedScheme,
            InvalidHost,
            NonAsciiHost,
            IpLiteral,
            HostNotAllowed,
            PortNotAllowed,
            Loopback,
            Private,
            LinkLocal,
            Multicast,
            Unspecified,
            Broadcast,
            Reserved,
            HostAddress,
            ResolveFailed,
            ConnectFailed,
            ConnectTimeout,
            UpstreamError,
            TlsFailed,
            CredentialNotAllowed,
            CredentialTokenFailed,
            ConcurrencyCap,
            ConnectionCap,
            ByteCap,
            IdleTimeout,
            Stopped,
            Internal,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert!((400..600).contains(&r.status()));
        }
    }

    #[test]
    fn the_recorder_keeps_accept_order_and_counts_what_it_drops() {
        let rec = Recorder::new(2);
        for id in [3, 1, 2] {
            let mut r = record(Verdict::Allowed { cut: None });
            r.id = id;
            rec.push(r);
        }
        let report = rec.snapshot();
        assert_eq!(
            report.connections.iter().map(|c| c.id).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(report.dropped_records, 1);
        assert_eq!(report.bytes_up(), 20);
    }
}
