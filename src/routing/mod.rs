//! Routing: deciding which Ingress rule serves a request.
//!
//! `path` and `table` are pure functions over values (no I/O, no locks); `build` turns a `World` into a
//! `RouteTable`, which the proxy swaps in whole.

pub mod build;
pub mod path;
pub mod table;
