//! The two serving modes, wired from the same parts: a source producing a `World`, the `ConfigBuilder`,
//! and the data plane (`dataplane::DataPlane`). Only the source differs between them.

pub mod cert_manager;
pub mod controller;
pub mod dataplane;
pub mod ingress_status;
pub mod issuers;
pub mod issuing;
pub mod keyed;
pub mod lease;
pub mod orders;
pub mod shim;
pub mod standalone;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cli::CommonArgs;
use crate::routing::build::BuildOptions;
use crate::world::ObjectKey;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("manifest directory {0}: {1}")]
    Manifests(PathBuf, std::io::Error),
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("--default-ssl-certificate {0:?} is not NAMESPACE/NAME")]
    DefaultCertificate(String),
    #[error("watching {0}: {1}")]
    Watch(PathBuf, notify::Error),
    #[error("{0}")]
    Flag(String),
    #[error("Kubernetes: {0}")]
    Kube(String),
}

pub fn build_options(
    common: &CommonArgs,
    watch_without_class: bool,
    allow_loopback: bool,
) -> BuildOptions {
    BuildOptions {
        controller: common.controller_class.clone(),
        ingress_class: common.ingress_class.clone(),
        watch_without_class,
        allow_loopback,
    }
}

/// `--default-ssl-certificate NAMESPACE/NAME`.
pub fn default_secret(common: &CommonArgs) -> Result<Option<ObjectKey>, AppError> {
    let Some(reference) = &common.default_ssl_certificate else {
        return Ok(None);
    };
    match ObjectKey::parse(reference, "") {
        Some(key) if reference.contains('/') => Ok(Some(key)),
        _ => Err(AppError::DefaultCertificate(reference.clone())),
    }
}

/// Wait until `at`, or forever when there is nothing to wait for.
pub async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
