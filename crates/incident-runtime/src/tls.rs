//! TLS for a service's own listeners: gRPC (through tonic) and HTTP (through rustls in front of
//! axum), from a PEM certificate chain and key given by `TLS_CERT_FILE` and `TLS_KEY_FILE`.
//! Without them both listeners speak plain text.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain for the gRPC and HTTP listeners (with --tls-key).
    #[arg(long = "tls-cert", env = "TLS_CERT_FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for the gRPC and HTTP listeners.
    #[arg(long = "tls-key", env = "TLS_KEY_FILE")]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("TLS needs both TLS_CERT_FILE and TLS_KEY_FILE"),
        }
    }

    /// A gRPC server builder, with TLS when configured.
    pub fn grpc_server(&self) -> anyhow::Result<tonic::transport::Server> {
        let builder = tonic::transport::Server::builder();
        let Some((cert, key)) = self.files()? else {
            return Ok(builder);
        };
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
        );
        Ok(builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?)
    }

    /// The rustls configuration of the HTTP listener, when configured.
    pub fn http_config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let Some((cert, key)) = self.files()? else {
            return Ok(None);
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("certificates in {}", cert.display()))?;
        anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
        let key = PrivateKeyDer::from_pem_file(&key)
            .with_context(|| format!("private key in {}", key.display()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown` completes.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

/// Serves a service's HTTP surface in a task (over TLS when configured) until `stop` turns true.
pub fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    tls: &TlsArgs,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let config = tls.http_config()?;
    Ok(tokio::spawn(async move {
        if let Err(e) = serve_http(listener, router, config, async move {
            let _ = stop.changed().await;
        })
        .await
        {
            tracing::warn!(error = %e, "the HTTP listener stopped with an error");
        }
    }))
}
