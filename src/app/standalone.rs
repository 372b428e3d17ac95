//! Standalone mode (`certgate run --manifests DIR`): the proxy fed from a directory of manifests, reloaded
//! on every change.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::app::dataplane::{DataPlane, ReportLog, log_report};
use crate::app::issuing::{Issuing, Sink};
use crate::app::{AppError, build_options, default_secret};
use crate::cli::RunArgs;
use crate::config::{ConfigBuilder, Snapshot};
use crate::metrics::Metrics;
use crate::sources::manifests;
use crate::tls::keypair;
use crate::world::{ObjectKey, World};

/// A file written in place may still be being written: its events (and others' within this window, as
/// when several files are copied at once) wait until they stop for this long, then make one reload. A
/// file renamed into place or removed is complete and reloads at once (see `is_complete`).
const RELOAD_SETTLE: Duration = Duration::from_millis(5);

pub async fn run(
    args: RunArgs,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
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
            let _ = tx.send(is_complete(&event));
        }
    })
    .map_err(|e| AppError::Watch(args.manifests.clone(), e))?;
    watcher
        .watch(&args.manifests, RecursiveMode::NonRecursive)
        .map_err(|e| AppError::Watch(args.manifests.clone(), e))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .map_err(|e| AppError::Manifests(args.state_dir.clone(), e))?;
    let dirs = Dirs {
        manifests: &args.manifests,
        state: &args.state_dir,
    };
    let started = Instant::now();
    let (first, mut world) = reloader.load(&dirs, &mut builder)?;
    metrics.config.reloaded(started.elapsed());
    metrics.certificates.publish(&world.world);
    let dataplane = DataPlane::start(&args.common, first, true, &metrics, shutdown.clone()).await?;
    let (mut issuing, mut outcomes) = Issuing::new(
        Sink::Files(args.state_dir.clone()),
        dataplane.http01(),
        dataplane.http_addr(),
        args.common.cluster_resource_namespace.clone(),
        args.common.max_issuance_backoff,
    );
    issuing.reconcile(&world.world, &world.user_secrets);
    metrics.sync_call("certificates");

    let mut stop = shutdown;
    loop {
        let wake = issuing.next_wake().map(tokio::time::Instant::from_std);
        let reload = tokio::select! {
            event = rx.recv() => {
                let Some(complete) = event else { break };
                if complete {
                    // Along with whatever else is already queued; later events reload again.
                    while rx.try_recv().is_ok() {}
                } else {
                    while let Ok(Some(_)) = tokio::time::timeout(RELOAD_SETTLE, rx.recv()).await {}
                }
                true
            }
            Some(outcome) = outcomes.recv() => issuing.finish(outcome).await,
            _ = crate::app::sleep_until_some(wake) => false,
            _ = stop.changed() => break,
        };
        if reload {
            let started = Instant::now();
            match reloader.load(&dirs, &mut builder) {
                Ok((snapshot, next)) => {
                    dataplane.apply(snapshot);
                    metrics.config.reloaded(started.elapsed());
                    metrics.certificates.publish(&next.world);
                    world = next;
                }
                Err(error) => {
                    metrics.config.reload_failed();
                    warn!(%error, "reload failed; the previous configuration keeps serving")
                }
            }
        }
        issuing.reconcile(&world.world, &world.user_secrets);
        metrics.sync_call("certificates");
    }
    dataplane.join().await;
    Ok(())
}

struct Dirs<'a> {
    manifests: &'a Path,
    state: &'a Path,
}

/// The objects of both directories: the user's manifests, and the Secrets certgate issued into the state
/// directory (a Secret the user defines wins, and is never overwritten).
struct Loaded {
    world: World,
    user_secrets: HashSet<ObjectKey>,
}

/// Reading the manifests ourselves raises access (open/close) events; reacting to them would reload in a
/// loop. Files the loader does not read (an editor's swap file, a `.tmp` about to be renamed into place)
/// cause no reload either — except `..data`-style names, through which a mounted ConfigMap swaps all its
/// files at once. Errors, and events that name no file, count as changes: a reload then reports what is
/// wrong.
fn is_change(event: &notify::Result<notify::Event>) -> bool {
    let relevant = |p: &std::path::PathBuf| {
        manifests::is_manifest_name(p)
            || p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".."))
    };
    event.as_ref().map_or(true, |e| {
        !e.kind.is_access() && (e.paths.is_empty() || e.paths.iter().any(relevant))
    })
}

/// A file renamed into place (how kubectl, ConfigMap volumes and careful tools write) or removed is whole:
/// no need to wait for more of it. Creating or writing a file in place may be half done.
fn is_complete(event: &notify::Result<notify::Event>) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    event.as_ref().is_ok_and(|e| {
        matches!(
            e.kind,
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_)
        )
    })
}

/// What a reload keeps between runs: parsed files, and what was already said.
#[derive(Default)]
struct Reloader {
    cache: manifests::ManifestCache,
    state: manifests::ManifestCache,
    reports: ReportLog,
    /// Manifest problems and skipped kinds already logged (logged again only after they went away).
    said: BTreeSet<String>,
}

impl Reloader {
    /// Read the directory (changed files only) and build a snapshot, logging what is new.
    fn load(
        &mut self,
        dirs: &Dirs<'_>,
        builder: &mut ConfigBuilder,
    ) -> Result<(Snapshot, Loaded), AppError> {
        let started = Instant::now();
        let dir = dirs.manifests;
        let mut loaded = self
            .cache
            .load(dir)
            .map_err(|e| AppError::Manifests(dir.to_owned(), e))?;
        let state = self
            .state
            .load(dirs.state)
            .map_err(|e| AppError::Manifests(dirs.state.to_owned(), e))?;
        let user_secrets: HashSet<ObjectKey> = loaded.world.secrets.keys().cloned().collect();
        for (key, secret) in state.world.secrets {
            loaded.world.secrets.entry(key).or_insert(secret);
        }
        loaded.problems.extend(state.problems);
        // ingress-shim: Certificates the annotated Ingresses ask for; one written in the manifests wins.
        let mut derived = Vec::new();
        for (key, ing) in &loaded.world.ingresses {
            match crate::certs::shim::certificates(ing, None) {
                Ok(certs) => derived.extend(certs),
                Err(bad) => loaded.problems.push(format!("Ingress {key}: {bad}")),
            }
        }
        for cert in derived {
            loaded
                .world
                .certificates
                .entry(ObjectKey::of(&cert))
                .or_insert_with(|| std::sync::Arc::new(cert));
        }
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
            info!(%skipped, "manifest kind not used by certgate");
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
        Ok((
            snapshot,
            Loaded {
                world: loaded.world,
                user_secrets,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
    };

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
        let renamed = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/m/.new.tmp".into())
            .add_path("/m/new.yaml".into());
        assert!(is_change(&Ok(renamed)));
        let written =
            notify::Event::new(EventKind::Modify(ModifyKind::Any)).add_path("/m/a.yml".into());
        assert!(is_change(&Ok(written)));
        let swapped =
            notify::Event::new(EventKind::Create(CreateKind::Any)).add_path("/m/..data".into());
        assert!(is_change(&Ok(swapped)), "a ConfigMap volume's swap");
    }

    #[test]
    fn renamed_or_removed_files_reload_at_once_and_writes_in_place_settle_first() {
        let with_path = |kind| Ok(notify::Event::new(kind).add_path("/m/a.yaml".into()));
        for kind in [
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(is_complete(&with_path(kind)), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Content)),
        ] {
            assert!(!is_complete(&with_path(kind)), "{kind:?}");
        }
        assert!(!is_complete(&Err(notify::Error::generic("queue overflow"))));
    }

    #[test]
    fn files_the_loader_does_not_read_trigger_no_reload() {
        for name in ["/m/.new.tmp", "/m/.a.yaml.swp", "/m/README.md"] {
            let e = notify::Event::new(EventKind::Create(CreateKind::File)).add_path(name.into());
            assert!(!is_change(&Ok(e)), "{name}");
        }
    }
}
