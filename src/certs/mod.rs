//! Certificates: what a cert-manager `Certificate` asks for, whether its Secret satisfies it, and issuing.
//!
//! `spec` and `decide` are pure (values in, values out); `issue` talks to issuers (SelfSigned and CA
//! locally, ACME over the network).

pub mod acme;
pub mod decide;
pub mod issue;
pub mod issuer_status;
pub mod shim;
pub mod solver;
pub mod spec;
