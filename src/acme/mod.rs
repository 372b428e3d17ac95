//! ACME: what the data plane needs to answer HTTP-01 challenges itself, and the metrics of the ACME client.

pub mod client_metrics;
pub mod http01;
