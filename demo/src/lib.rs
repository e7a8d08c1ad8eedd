//! The on-call demo: topology, toy apps and the scenario, shared by `make demo` and the
//! end-to-end tests.

pub mod apps;
pub mod envoy;
pub mod fault_sts;
pub mod hostile;
pub mod otlp;
pub mod scenario;
pub mod topology;
