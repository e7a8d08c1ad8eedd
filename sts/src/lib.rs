//! The actorchain security token service: RFC 8693 token exchange that mints single-hop,
//! audience-bound tokens carrying the whole actor chain, for workloads authenticated by SPIFFE.

pub mod admin;
pub mod app;
pub mod audit;
pub mod bench_report;
pub mod checkpoint;
pub mod config;
pub mod db;
pub mod dev;
pub mod dev_postgres;
pub mod error;
pub mod exchange;
pub mod form;
pub mod https_client;
pub mod keys;
pub mod ledger;
pub mod lineage;
pub mod metrics;
pub mod pg;
pub mod registry;
pub mod reports;
pub mod revocations;
pub mod rollout;
pub mod sealing;
pub mod server;
pub mod state;
pub mod svid;
pub mod sync;
pub mod telemetry;
pub mod token_endpoint;
