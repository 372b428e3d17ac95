//! Full TLS handshakes per second against one address: the load generator of `bench/proxy.sh`'s tls-new phase.
//!
//!   cargo run --release --example tls-handshakes -- ADDR SERVER_NAME CA_PEM SECONDS CONCURRENCY
//!
//! Each of CONCURRENCY tasks, on one thread, loops until SECONDS have passed: TCP connect, a full TLS handshake
//! (no session offered, the server's certificate verified against CA_PEM for SERVER_NAME, sent as SNI),
//! close_notify, close. It prints one line:
//!
//!   handshakes N errors E seconds S p50_ms X p99_ms Y
//!
//! Why not `openssl s_time -new`: OpenSSL 3.0's client spent about 0.9 ms of CPU per handshake here, more
//! than either proxy's server side, so the load generator's core set the rate for certgate and nginx alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One handshake that takes longer than this is an error, not a long sample.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

struct Args {
    addr: String,
    server_name: ServerName<'static>,
    ca_pem: String,
    duration: Duration,
    concurrency: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, name, ca, seconds, concurrency] = args.as_slice() else {
        anyhow::bail!("usage: tls-handshakes ADDR SERVER_NAME CA_PEM SECONDS CONCURRENCY");
    };
    Ok(Args {
        addr: addr.clone(),
        server_name: ServerName::try_from(name.clone())?,
        ca_pem: ca.clone(),
        duration: Duration::from_secs_f64(seconds.parse()?),
        concurrency: concurrency.parse()?,
    })
}

fn client_config(ca_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    // X25519 alone, the group OpenSSL 3.0 (nginx's side) offers first: both proxies do the same key exchange.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake full, as s_time -new makes them.
    config.resumption = Resumption::disabled();
    Ok(config)
}

async fn handshake(connector: &TlsConnector, args: &Args) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&args.addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(args.server_name.clone(), tcp).await?;
    // close_notify, then FIN: the server sees a finished handshake and a clean end.
    tls.shutdown().await?;
    Ok(())
}

/// Handshake latencies in microseconds, and the number of failed attempts.
async fn worker(connector: TlsConnector, args: Arc<Args>, until: Instant) -> (Vec<u32>, u64) {
    let (mut samples, mut errors) = (Vec::new(), 0);
    while Instant::now() < until {
        let start = Instant::now();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&connector, &args)).await {
            Ok(Ok(())) => {
                samples.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX))
            }
            Ok(Err(e)) => {
                if errors == 0 {
                    eprintln!("tls-handshakes: {e:#}");
                }
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    (samples, errors)
}

/// The q-quantile of sorted samples, in milliseconds (nearest rank).
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let connector = TlsConnector::from(Arc::new(client_config(&args.ca_pem)?));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let until = started + args.duration;
    let (mut samples, errors) = runtime.block_on(async {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| tokio::spawn(worker(connector.clone(), args.clone(), until)))
            .collect();
        let (mut samples, mut errors) = (Vec::new(), 0);
        for w in workers {
            let (s, e) = w.await?;
            samples.extend(s);
            errors += e;
        }
        anyhow::Ok((samples, errors))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    samples.sort_unstable();
    println!(
        "handshakes {} errors {} seconds {:.3} p50_ms {:.3} p99_ms {:.3}",
        samples.len(),
        errors,
        seconds,
        quantile_ms(&samples, 0.50),
        quantile_ms(&samples, 0.99)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile_ms;

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&sorted, 0.50), 50.0);
        assert_eq!(quantile_ms(&sorted, 0.99), 99.0);
        assert_eq!(quantile_ms(&[7000], 0.99), 7.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }
}
