//! The filter's plugin configuration, as Envoy hands it to `on_configure`: no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = actorchain::config::Config::parse(data);
});
