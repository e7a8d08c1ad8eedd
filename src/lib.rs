//! actorchain, the Envoy filter. Outbound, it exchanges the token an agent holds for a single-hop
//! token for the next audience; inbound, it verifies tokens and hands the app the verified identity.
//!
//! Everything that decides is pure and tested natively: configuration, bearer parsing, inbound
//! verification and route checks, correlation, outbound planning, the exchange cache, replies,
//! the request flow (`filter`) and each worker's periodic work (`root`), which talk to the proxy
//! only through the `Host` trait. The proxy-wasm glue (`wasm`) implements that trait and is
//! compiled only for wasm32. `docs/architecture.md` draws the whole.

pub mod bearer;
pub mod cache;
pub mod config;
pub mod correlation;
pub mod filter;
pub mod host;
pub mod host_crypto;
pub mod identity;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod reply;
pub mod reports;
pub mod revocation_feed;
pub mod root;
pub mod rpc;
pub mod singleflight;
pub mod slots;
pub mod verified_cache;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use actorchain_token as token;
