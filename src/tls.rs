//! TLS on the public listener (`DUET_TLS_CERT` / `DUET_TLS_KEY`), for
//! deployments where clients reach a node directly, without a balancer that
//! terminates TLS in front of it (scripts/cluster puts HAProxy there).
//!
//! tokio-rustls on the ring provider, the one the workspace already builds
//! for reqwest: poem's own rustls listener would bring aws-lc-rs (its
//! tokio-rustls default) for the same job. The admin listener stays plain: it
//! is meant for loopback and the operator's network only.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An acceptor serving the PEM certificate chain at `cert` with the key at `key`.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("DUET_TLS_CERT: cannot read a PEM certificate chain from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "DUET_TLS_CERT: {} holds no certificate", cert.display());
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("DUET_TLS_KEY: cannot read a PEM private key from {}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("DUET_TLS_CERT and DUET_TLS_KEY do not make a usable certificate (does the key match?)")?;
    // The server speaks HTTP/1.1 only (WebSocket upgrades ride on it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
