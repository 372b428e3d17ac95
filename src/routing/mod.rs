//! Routing: deciding which Ingress rule serves a request. Pure functions over values only — no I/O, no
//! Kubernetes types, no locks; the proxy builds its tables from these and swaps them in elsewhere.

pub mod path;
