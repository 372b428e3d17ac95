//! Standalone mode (`certgate run --manifests DIR`): the proxy fed from a directory of manifests, reloaded
//! on every change.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::app::dataplane::{DataPlane, ReportLog, log_report};
use crate::app::{AppError, build_options, default_secret};
use crate::cli::RunArgs;
use crate::config::{ConfigBuilder, Snapshot};
use crate::sources::manifests;
use crate::tls::keypair;

/// A burst of file events (an editor's save, several files copied at once) within this window is one
/// reload. Short, because it adds directly to the time a change takes to apply.
const RELOAD_SETTLE: Duration = Duration::from_millis(5);

pub async fn run(args: RunArgs, shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
    // Standalone mode serves Ingresses without a class, and loopback endpoints, by default.
    let options = build_options(&args.common, true, true);
    let generated = keypair::generate_default().map_err(|e| AppError::Tls(e.to_string()))?;
    let mut builder =
        ConfigBuilder::new(options, generated.certified, default_secret(&args.common)?);
    let mut reloader = Reloader::default();

    // Watch before the first load, so no change between the two is missed. A burst of events (an
    // editor's save) becomes one reload.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if is_change(&event) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| AppError::Watch(args.manifests.clone(), e))?;
    watcher
        .watch(&args.manifests, RecursiveMode::NonRecursive)
        .map_err(|e| AppError::Watch(args.manifests.clone(), e))?;
    let first = reloader.load(&args.manifests, &mut builder)?;
    let dataplane = DataPlane::start(&args.common, first, true, shutdown.clone()).await?;

    let mut stop = shutdown;
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() { break; }
                while let Ok(Some(_)) = tokio::time::timeout(RELOAD_SETTLE, rx.recv()).await {}
                match reloader.load(&args.manifests, &mut builder) {
                    Ok(snapshot) => dataplane.apply(snapshot),
                    Err(error) => warn!(%error, "reload failed; the previous configuration keeps serving"),
                }
            }
            _ = stop.changed() => break,
        }
    }
    dataplane.join().await;
    Ok(())
}

/// Reading the manifests ourselves raises access (open/close) events; reacting to them would reload in a
/// loop. Errors count as changes: a reload then reports what is wrong.
fn is_change(event: &notify::Result<notify::Event>) -> bool {
    event.as_ref().map_or(true, |e| !e.kind.is_access())
}

/// What a reload keeps between runs: parsed files, and what was already said.
#[derive(Default)]
struct Reloader {
    cache: manifests::ManifestCache,
    reports: ReportLog,
    /// Manifest problems and skipped kinds already logged (logged again only after they went away).
    said: BTreeSet<String>,
}

impl Reloader {
    /// Read the directory (changed files only) and build a snapshot, logging what is new.
    fn load(&mut self, dir: &Path, builder: &mut ConfigBuilder) -> Result<Snapshot, AppError> {
        let started = Instant::now();
        let loaded = self
            .cache
            .load(dir)
            .map_err(|e| AppError::Manifests(dir.to_owned(), e))?;
        let read_ms = started.elapsed().as_secs_f64() * 1000.0;
        let now: BTreeSet<String> = loaded
            .problems
            .iter()
            .chain(&loaded.skipped)
            .cloned()
            .collect();
        for problem in loaded.problems.iter().filter(|p| !self.said.contains(*p)) {
            warn!(%problem, "manifest not loaded");
        }
        for skipped in loaded.skipped.iter().filter(|p| !self.said.contains(*p)) {
            info!(%skipped, "manifest kind not used by the proxy");
        }
        self.said = now;
        let build_started = Instant::now();
        let snapshot = builder.build(&loaded.world);
        self.reports
            .fresh(&snapshot.reports)
            .into_iter()
            .for_each(log_report);
        info!(
            ingresses = loaded.world.ingresses.len(),
            hosts = snapshot.routes.host_count(),
            certificates = snapshot.certs.len(),
            read_ms,
            build_ms = build_started.elapsed().as_secs_f64() * 1000.0,
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            "configuration loaded"
        );
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};

    fn event(kind: EventKind) -> notify::Result<notify::Event> {
        Ok(notify::Event::new(kind))
    }

    #[test]
    fn our_own_reads_do_not_trigger_a_reload() {
        assert!(!is_change(&event(EventKind::Access(AccessKind::Open(
            AccessMode::Read
        )))));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
    }

    #[test]
    fn creating_writing_renaming_and_removing_files_trigger_a_reload() {
        assert!(is_change(&event(EventKind::Create(CreateKind::File))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Any))));
        assert!(is_change(&event(EventKind::Remove(RemoveKind::File))));
        assert!(is_change(&Err(notify::Error::generic("queue overflow"))));
    }
}
