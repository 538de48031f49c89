//! TLS the proxy opens itself, for a credential's `https://` request: the
//! box speaks plain HTTP to the proxy (so the proxy can add the secret), and
//! the proxy speaks TLS to the upstream, verifying its certificate against
//! the system's roots (and the policy's extra ones) for the target's name.
//!
//! Must never: skip verification, or verify against a name other than the
//! admitted target's.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::host::{Host, Target};
use crate::record::{Reason, Refusal};

/// The system's trusted roots, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "egress proxy: a system CA certificate could not be read");
        }
        found.certs
    })
}

fn config(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, Refusal> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if extra.is_empty()
        && let Some(c) = SYSTEM.get()
    {
        return Ok(c.clone());
    }
    let made = build(extra)?;
    if extra.is_empty() {
        let _ = SYSTEM.set(made.clone());
    }
    Ok(made)
}

fn build(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, Refusal> {
    let internal = |why: String| Refusal::new(Reason::Internal, why);
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "egress proxy: system CA certificates rustls cannot use");
    }
    for der in extra {
        roots
            .add(der.clone())
            .map_err(|e| internal(format!("a trusted root of the policy is unusable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| internal(format!("TLS is not available: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS over `io` to `target`, its certificate verified for the target's
/// host.
pub(crate) async fn connect<IO>(
    io: IO,
    target: &Target,
    extra: &[CertificateDer<'static>],
) -> Result<TlsStream<IO>, Refusal>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let name = match &target.host {
        Host::Name(n) => ServerName::try_from(n.as_str().to_owned()),
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
    }
    .map_err(|e| {
        Refusal::new(
            Reason::InvalidHost,
            format!("{}: not a TLS server name: {e}", target.host),
        )
    })?;
    TlsConnector::from(config(extra)?)
        .connect(name, io)
        .await
        .map_err(|e| Refusal::new(Reason::TlsFailed, format!("TLS with {target} failed: {e}")))
}
