//! Routing: deciding which Ingress rule serves a request.
//!
//! `path` and `table` are pure functions over values (no I/O, no locks); `build` compiles one Ingress and
//! merges one server, `backends` resolves Service backends, and `builder` keeps a `RouteTable` up to date
//! with a changing `World` by redoing only what a change touches. The proxy swaps each table in whole.

pub mod backends;
pub mod build;
pub mod builder;
pub mod path;
pub mod table;
