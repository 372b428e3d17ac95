//! Sources turn the outside world into a `World`: the manifest directory (standalone mode) and, later,
//! kube-runtime reflectors (Kubernetes mode). Nothing past a source knows which one is in use.

pub mod manifests;
mod merged;
