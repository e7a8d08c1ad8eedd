//! Interoperability: a token minted by the STS is accepted by Envoy's own `jwt_authn` filter
//! (real Envoy, `remote_jwks` fetched from the STS over TLS) and refused there once expired.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

struct Envoy {
    _child: Reaped,
    port: u16,
}

fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy"));
    assert!(p.exists(), "Envoy not found at {} (run `make envoy` or set ENVOY_BIN)", p.display());
    p
}

fn start_envoy(sts: &Sts) -> Envoy {
    let dir = sts.dir.path();
    let cfg = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "reached the app"}}}
                        ]}]},
                        "http_filters": [
                            {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                                "providers": {"actorchain": {
                                    "issuer": "https://sts.actorchain.dev",
                                    "audiences": ["mcp-gateway"],
                                    "clock_skew_seconds": 1,
                                    "remote_jwks": {
                                        "http_uri": {"uri": "https://sts.actorchain.dev/.well-known/jwks.json", "cluster": "sts", "timeout": "2s"},
                                        "cache_duration": "300s"
                                    }
                                }},
                                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "actorchain"}}]
                            }},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": [{
                "name": "sts",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "sts", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": sts.addr.port()}}}}]}]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": "sts.actorchain.dev",
                    "common_tls_context": {"validation_context": {
                        "trusted_ca": {"filename": dir.join("bundle.pem")},
                        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": "spiffe://actorchain.dev/workload/sts"}}]
                    }}
                }}
            }]
        }
    });
    let cfg_path = dir.join("envoy-jwt-authn.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let admin_path = dir.join("envoy-admin.txt");
    let child = Reaped(
        Command::new(envoy_bin())
            .arg("-c")
            .arg(&cfg_path)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "warning", "--admin-address-path"])
            .arg(&admin_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("envoy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin = loop {
        if let Ok(a) = std::fs::read_to_string(&admin_path) {
            if !a.trim().is_empty() {
                break a.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "Envoy did not start: {}", std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    };
    let port = loop {
        let out = http_get(&admin, "/listeners?format=json", None).1;
        // The admin answers chunked; the JSON document is the single object in the body.
        let doc = out.find('{').zip(out.rfind('}')).map_or("", |(a, b)| &out[a..=b]);
        if let Some(p) = serde_json::from_str::<serde_json::Value>(doc)
            .ok()
            .and_then(|v| v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64())
        {
            break p as u16;
        }
        assert!(Instant::now() < deadline, "Envoy listener did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    Envoy { _child: child, port }
}

/// A plain HTTP/1.1 GET, enough for Envoy's admin and listener.
fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nhost: mcp-gateway\r\n{auth}connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_jwt_authn_accepts_sts_tokens_and_refuses_expired_ones() {
    let sts = Sts::start();
    let envoy = start_envoy(&sts);
    let addr = format!("127.0.0.1:{}", envoy.port);

    // The chain: a person's token that lives 3 s bounds every token minted from it.
    let person = actorchain_sts::dev::person_token(sts.dir.path(), "user1", "oncall-agent", "incidents:read", 3, None, now()).unwrap();
    let mut oncall = sts.connect(Some("oncall")).await;
    let t1 = access_token(&exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await);
    let mut inv = sts.connect(Some("investigation")).await;
    let t2 = access_token(&exchange(&mut inv, &t1, "mcp-gateway", "investigation-agent", &[]).await);

    let (status, body) = http_get(&addr, "/tools", Some(&t2));
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("reached the app"));
    // jwt_authn checks audience: the hop-one token is for the investigation agent, not for us.
    assert_ne!(http_get(&addr, "/tools", Some(&t1)).0, 200);
    assert_eq!(http_get(&addr, "/tools", None).0, 401);

    let exp = payload(&t2)["exp"].as_u64().unwrap();
    // clock_skew_seconds 0 reads as unset (60 s) in proto3, so the test allows Envoy 1 s.
    while now() <= exp + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = http_get(&addr, "/tools", Some(&t2));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
}
