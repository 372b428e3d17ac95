//! ACME: what the data plane needs to answer HTTP-01 challenges itself.

pub mod http01;
