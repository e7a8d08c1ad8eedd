//! actorchain as a native Envoy filter: an Envoy dynamic module (`libactorchain_envoy.so`, loaded
//! by `envoy.filters.http.dynamic_modules`) for Envoy 1.40. The decisions are `actorchain`'s own,
//! unchanged, behind its `Host` trait; only the adapter differs from the wasm build: Envoy's
//! dynamic-modules callbacks instead of proxy-wasm, process memory instead of shared data, one
//! root on the main thread instead of one per VM. `abi` holds every `unsafe` line.
//!
//! Built with `make native` (`cargo build --profile native -p actorchain-envoy`: release, but a
//! panic unwinds to the entry point, which fails that request closed).

// The bindings and what calls through them link only inside Envoy.
#[cfg(not(test))]
mod abi;
#[cfg(not(test))]
mod entry;
#[cfg(not(test))]
mod host;
mod store;
