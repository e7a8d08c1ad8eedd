//! The demo topology: the real STS, one real Envoy sidecar per workload (configured from
//! `envoy/sidecar.yaml`), and the toy apps behind them. Used by `make demo` and by the end-to-end
//! tests, so the tests assert exactly what the demo shows. Everything listens on 127.0.0.1, on
//! ports the kernel hands out, and stops when the `Demo` is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchain_sts::dev;
use actorchain_sts::https_client::{Connection, Reply};
use actorchain_sts::svid;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::apps::{self, Next};
pub use crate::envoy::envoy_args;
use crate::envoy::Envoy;

/// Which build of the filter the sidecars load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterBuild {
    /// The proxy-wasm module (the default, and what Istio's WasmPlugin loads).
    Wasm(PathBuf),
    /// The native Envoy dynamic module.
    Native(PathBuf),
}

impl FilterBuild {
    /// `ACTORCHAIN_FILTER` (`wasm`, the default, or `native`), built under `target`.
    pub fn from_env(target: &Path) -> Result<FilterBuild, String> {
        match std::env::var("ACTORCHAIN_FILTER").as_deref() {
            Err(_) | Ok("") | Ok("wasm") => Ok(FilterBuild::Wasm(target.join("wasm32-wasip1/release/actorchain.wasm"))),
            Ok("native") => Ok(FilterBuild::Native(target.join("native/libactorchain_envoy.so"))),
            Ok(other) => Err(format!("ACTORCHAIN_FILTER={other}: expected wasm or native")),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            FilterBuild::Wasm(p) | FilterBuild::Native(p) => p,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "wasm",
            FilterBuild::Native(_) => "native",
        }
    }

    fn how_to_build(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "cargo build --release --target wasm32-wasip1 -p actorchain",
            FilterBuild::Native(_) => "make native",
        }
    }
}

/// Where the built pieces are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub sts_bin: PathBuf,
    pub envoy: PathBuf,
    /// The filter the sidecars load (`ACTORCHAIN_FILTER`).
    pub filter: FilterBuild,
    pub template: PathBuf,
    pub work: PathBuf,
}

impl Paths {
    /// The workspace's own build outputs: the STS from `target/<profile>`, the filter from
    /// `target/wasm32-wasip1/release` (or `target/native` with `ACTORCHAIN_FILTER=native`), Envoy
    /// from `.venv` (or `ENVOY_BIN`).
    pub fn workspace(root: &Path, profile: &str, work: PathBuf) -> Paths {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let envoy = std::env::var_os("ENVOY_BIN").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/envoy"));
        Paths {
            sts_bin: target.join(profile).join("actorchain-sts"),
            envoy,
            // An unknown choice is refused by `check`, before anything starts.
            filter: FilterBuild::from_env(&target).unwrap_or(FilterBuild::Wasm(target.join("wasm32-wasip1/release/actorchain.wasm"))),
            template: root.join("envoy/sidecar.yaml"),
            work,
        }
    }

    fn check(&self) -> Result<(), String> {
        // A run must never test the other build than the one asked for.
        FilterBuild::from_env(Path::new(""))?;
        for (what, p, how) in [
            ("STS binary", self.sts_bin.as_path(), "cargo build -p actorchain-sts"),
            ("Envoy", &self.envoy, "make envoy"),
            ("filter", self.filter.path(), self.filter.how_to_build()),
            ("sidecar template", &self.template, "a checkout with envoy/"),
        ] {
            if !p.exists() {
                return Err(format!("{what} not found at {} (needs: {how})", p.display()));
            }
        }
        Ok(())
    }
}

/// One workload: its agent identity (the audience others address it by), its app and sidecar.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: &'static str,
    pub identity: &'static str,
    pub app: SocketAddr,
    pub ingress: SocketAddr,
    pub egress: SocketAddr,
}

/// A request in flight whose body has not been sent yet (`Demo::call_held`).
pub struct HeldCall {
    sender: http_body_util::channel::Sender<bytes::Bytes, std::convert::Infallible>,
    body: Vec<u8>,
    answer: tokio::task::JoinHandle<Result<(u16, Value), String>>,
}

impl HeldCall {
    /// Sends the body; the answer's status and body.
    pub async fn finish(mut self) -> Result<(u16, Value), String> {
        self.sender.send_data(bytes::Bytes::from(self.body)).await.map_err(|_| "the request was answered before its body")?;
        drop(self.sender);
        self.answer.await.map_err(|e| e.to_string())?
    }
}

/// The on-call chain: user1 → oncall-agent → investigation-agent → MCP server.
pub const CHAIN: [(&str, &str); 3] = [("oncall", "oncall-agent"), ("investigation", "investigation-agent"), ("mcp-server", "mcp-gateway")];

pub struct Demo {
    pub dev: PathBuf,
    pub sts: SocketAddr,
    /// The STS's admin listener (health, metrics, the lineage page); its first instance's.
    pub sts_admin: SocketAddr,
    /// A second STS sharing the first one's database (with `Tuning::database`).
    pub sts_replica: Option<SocketAddr>,
    pub workloads: Vec<Workload>,
    /// Behind a lock so a test can kill and restart the STS while requests are in flight.
    sts_child: std::sync::Mutex<Option<Child>>,
    replica_child: Option<Child>,
    /// Each sidecar's Envoy, by workload name.
    envoys: Vec<(&'static str, Envoy)>,
    paths: Paths,
    tuning: Tuning,
}

/// What tests vary about the sidecars; the default is what `make demo` runs.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// The filters' `shared_slots` (their default when `None`).
    pub shared_slots: Option<u32>,
    /// The inbound filters' `jwks_refresh_seconds` (30 when `None`).
    pub jwks_refresh_seconds: Option<u64>,
    /// The STS's key rotation: `rotate_every_seconds` and `publish_lead_seconds`.
    pub rotation: Option<(u64, u64)>,
    /// The STS's `signing.alg` (EdDSA when `None`).
    pub sts_alg: Option<&'static str>,
    /// A `postgres://` URL: the STS runs as two replicas sharing it, each with a state
    /// directory of its own, and every sidecar balances over both.
    pub database: Option<String>,
    /// How the ingress listeners take connections (mTLS requiring a client certificate unless
    /// a test weakens it, as a PERMISSIVE mesh would).
    pub ingress: Ingress,
    /// The inbound filters' `sender_binding` (their default when `None`).
    pub sender_binding: Option<&'static str>,
    /// The agents' inbound filters hand the correlation key over as `x-request-id` too.
    pub correlation_x_request_id: bool,
    /// `false`: every filter observes only (`"enforce": false`).
    pub enforce: Option<bool>,
    /// What the toy agents propagate to their next hop (the W3C trace context and `x-request-id`
    /// when `None`).
    pub app_propagates: Option<&'static [&'static str]>,
    /// An OTLP/HTTP collector: the STS sends a span per exchange there, and every sidecar its
    /// requests' spans tagged with the filters' decisions. Without it, no tracing at all.
    pub otlp: Option<SocketAddr>,
    /// The sidecars' `sts.reports.max_buffered` (their default when `None`).
    pub reports_max_buffered: Option<usize>,
}

/// What an ingress listener asks of its peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ingress {
    /// TLS with a client certificate required and verified (the sidecar template).
    #[default]
    Mtls,
    /// TLS, a client certificate verified if one is sent, none required.
    TlsClientCertOptional,
    /// No TLS at all.
    Plaintext,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.envoys.clear();
        for c in self.replica_child.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_sts();
    }
}

/// A bootstrap with one plain-HTTP listener `app` on `port` (0: any; the admin API, on a port of
/// its own, tells which): the actorchain filter configured with `plugin` (the wasm build under
/// Envoy's `failure_policy`; the native build has none: it fails each request closed itself), in
/// front of a route that answers 200 `app`. The STS cluster points at a closed port.
pub fn lone_filter_config(filter: &FilterBuild, plugin: &str, failure_policy: &str, port: u16) -> String {
    let path = filter.path().display();
    let typed_config = match filter {
        FilterBuild::Wasm(_) => format!(
            r#"
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                failure_policy: {failure_policy}
                vm_config: {{runtime: envoy.wasm.runtime.v8, code: {{local: {{filename: "{path}"}}}}}}
                configuration: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: '{plugin}'}}"#
        ),
        FilterBuild::Native(_) => format!(
            r#"
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{module: {{local: {{filename: "{path}"}}}}}}
              filter_name: actorchain
              filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: '{plugin}'}}"#
        ),
    };
    format!(
        r#"
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: app
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config: {{virtual_hosts: [{{name: a, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: "app"}}}}}}]}}]}}
          http_filters:
          - name: actorchain
            typed_config:{typed_config}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: sts
    connect_timeout: 0.2s
    load_assignment: {{cluster_name: sts, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9}}}}}}}}]}}]}}
"#
    )
}

/// Where a listener or cluster points: an IP (Envoy's STATIC clusters) or a DNS name
/// (STRICT_DNS, as in docker compose).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub dns: bool,
}

impl Endpoint {
    pub fn ip(host: &str, port: u16) -> Endpoint {
        Endpoint { host: host.into(), port, dns: false }
    }

    pub fn dns(host: &str, port: u16) -> Endpoint {
        Endpoint { host: host.into(), port, dns: true }
    }

    fn cluster_type(&self) -> &'static str {
        if self.dns {
            "STRICT_DNS"
        } else {
            "STATIC"
        }
    }
}

/// Everything one workload's sidecar configuration depends on.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    /// The dev trust domain: SVIDs, bundle, the IdP's keys.
    pub dev: PathBuf,
    pub filter: FilterBuild,
    pub workload: &'static str,
    pub identity: &'static str,
    /// Where the mTLS ingress listens.
    pub ingress: Endpoint,
    /// The app's egress listener and the app itself, on the workload's loopback.
    pub egress_port: u16,
    pub app_port: u16,
    /// The STS replicas (one or more), all reached the same way (by IP or by name).
    pub sts: Vec<Endpoint>,
    /// The next hop: workload, identity, ingress.
    pub next: Option<(&'static str, &'static str, Endpoint)>,
    pub tuning: Tuning,
    pub certs: CertSource,
}

/// Where a sidecar gets its X.509-SVID and the trust bundle.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files of the dev trust domain (`svid/<workload>.pem`, `bundle.pem`).
    Files,
    /// The SPIRE agent's SDS API on its Unix socket: the SVID by the workload's SPIFFE ID, the
    /// bundle by the trust domain's.
    SpireAgent(PathBuf),
}

impl CertSource {
    /// `common_tls_context` for `workload`, checking the peer is `peer` (a SPIFFE ID) if given.
    fn tls_context(&self, dev: &Path, workload: &str, peer: Option<&str>) -> Value {
        let san = |v: &mut Value| {
            if let Some(p) = peer {
                v["match_typed_subject_alt_names"] = json!([{"san_type": "URI", "matcher": {"exact": p}}]);
            }
        };
        match self {
            CertSource::Files => {
                let mut validation = json!({"trusted_ca": {"filename": dev.join("bundle.pem")}});
                san(&mut validation);
                json!({
                    "tls_certificates": [{"certificate_chain": {"filename": dev.join(format!("svid/{workload}.pem"))},
                                          "private_key": {"filename": dev.join(format!("svid/{workload}-key.pem"))}}],
                    "validation_context": validation,
                })
            }
            CertSource::SpireAgent(_) => {
                let sds = |name: String| {
                    json!({"name": name, "sds_config": {"resource_api_version": "V3", "api_config_source": {
                    "api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": SPIRE_AGENT_CLUSTER}}]}}})
                };
                let mut default = json!({});
                san(&mut default);
                json!({
                    "tls_certificate_sds_secret_configs": [sds(dev::workload_id(workload))],
                    "combined_validation_context": {
                        "default_validation_context": default,
                        "validation_context_sds_secret_config": sds(format!("spiffe://{}", dev::TRUST_DOMAIN)),
                    },
                })
            }
        }
    }

    /// The cluster SDS is fetched from, if any.
    fn cluster(&self) -> Option<Value> {
        let CertSource::SpireAgent(socket) = self else { return None };
        Some(json!({
            "name": SPIRE_AGENT_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": SPIRE_AGENT_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket}}}}]}]},
        }))
    }
}

const SPIRE_AGENT_CLUSTER: &str = "spire_agent";

/// The inbound plugin configuration of a workload: people may enter at the on-call agent and
/// the MCP server; the MCP server's rules are the on-call policy.
pub fn inbound_plugin(spec: &SidecarSpec) -> Value {
    let mut c = json!({
        "mode": "inbound", "issuer": dev::STS_ISSUER, "audience": spec.identity,
        "sts": sts_plugin(spec), "jwks_refresh_seconds": spec.tuning.jwks_refresh_seconds.unwrap_or(30),
    });
    if spec.workload == "oncall" || spec.workload == "mcp-server" {
        // People arrive with their IdP's token at the session's entry point (from our IdP or a
        // partner's), and may call the MCP server directly where a rule lets them.
        let people: Vec<Value> = dev::IDPS
            .iter()
            .map(|idp| {
                let file = spec.dev.join(format!("{}-jwks.json", idp.name));
                let jwks: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap_or_default()).unwrap_or_default();
                // Only the front end presents people's tokens to the agents.
                json!({"issuer": idp.issuer, "jwks": jwks, "presenters": [dev::workload_id("frontend")]})
            })
            .collect();
        c["people"] = json!(people);
    }
    if let Some(mode) = spec.tuning.sender_binding {
        c["sender_binding"] = json!(mode);
    }
    if let Some(enforce) = spec.tuning.enforce {
        c["enforce"] = json!(enforce);
    }
    // Probes and discovery need no token.
    c["exempt"] = json!([{"method": "GET", "path": "/healthz"}, {"method": "GET", "path": "/.well-known/agent-card.json"}]);
    if spec.tuning.correlation_x_request_id {
        c["correlation"] = json!({"x_request_id": true});
    }
    if spec.workload == "investigation" {
        // The on-call agent hands work over A2A: investigating, for anyone's session; escalating,
        // only for user1's (the incident commander).
        c["a2a"] = json!({"path_prefix": "/a2a"});
        c["rules"] = json!([
            {"id": "investigate", "a2a_method": "message/send", "skill": "investigate", "actors": ["oncall-agent"]},
            {"id": "escalate", "a2a_method": "message/send", "skill": "escalate", "actors": ["oncall-agent"],
             "originators": [{"issuer": dev::IDP_ISSUER, "sub": "user1"}]},
            {"id": "tasks", "a2a_method": "tasks/*", "actors": ["oncall-agent"]}
        ]);
    }
    if spec.workload == "mcp-server" {
        // It calls no one: nothing to record for an outbound side.
        c["correlation"] = json!({"record": false});
        c["mcp"] = json!({"path_prefix": "/mcp"});
        let on_call = |sub: &str| json!({"issuer": dev::IDP_ISSUER, "sub": sub});
        c["rules"] = json!([
            // Opening a PR: only for work an on-call engineer of ours (user1, user2; not the
            // partner's user1) started, through the on-call agent, with the investigation agent calling.
            {"id": "create-pr", "mcp_method": "tools/call", "name": "create_pr", "scopes": ["repo:write"],
             "originators": [on_call("user1"), on_call("user2")], "actors": ["investigation-agent"], "chain_includes": ["oncall-agent"]},
            {"id": "read-metrics", "mcp_method": "tools/call", "name": "read_metrics", "scopes": ["metrics:read"],
             "actors": ["monitoring-agent", "investigation-agent"]},
            // Listing incidents: people may do that themselves.
            {"id": "list-incidents", "mcp_method": "tools/call", "name": "list_incidents", "scopes": ["incidents:read"], "people_directly": true}
        ]);
    }
    if let Some(n) = spec.tuning.shared_slots {
        c["shared_slots"] = json!(n);
    }
    if spec.tuning.otlp.is_some() {
        c["trace_tags"] = json!(true);
    }
    c
}

/// How both plugins reach the STS (and report to its ledger).
fn sts_plugin(spec: &SidecarSpec) -> Value {
    let mut sts = json!({"cluster": "sts", "timeout_ms": 2000});
    if let Some(n) = spec.tuning.reports_max_buffered {
        sts["reports"] = json!({"max_buffered": n});
    }
    sts
}

pub fn outbound_plugin(spec: &SidecarSpec) -> Value {
    let destinations = match &spec.next {
        // Least privilege: the investigation agent only ever needs to open PRs and read metrics
        // at the MCP gateway, whatever else the person delegated.
        Some((_, "mcp-gateway", _)) => json!({"mcp-gateway": {"audience": "mcp-gateway", "scope": "repo:write metrics:read"}}),
        Some((_, identity, _)) => json!({ *identity: identity }),
        None => json!({}),
    };
    let mut c = json!({"mode": "outbound", "agent": spec.identity, "sts": sts_plugin(spec), "destinations": destinations});
    if let Some(n) = spec.tuning.shared_slots {
        c["shared_slots"] = json!(n);
    }
    if let Some(enforce) = spec.tuning.enforce {
        c["enforce"] = json!(enforce);
    }
    if spec.tuning.otlp.is_some() {
        c["trace_tags"] = json!(true);
    }
    c
}

/// How the STS is started, here and in `docker-compose.yml`.
pub fn sts_args(config: &Path, listen: &str, admin_listen: &str) -> Vec<String> {
    let config = config.display().to_string();
    ["serve", "--config", &config, "--listen", listen, "--admin-listen", admin_listen].map(String::from).to_vec()
}

/// Ports of a workload when it has a network of its own (a container, a pod): the mTLS ingress
/// on every interface, the egress and the app on loopback.
pub const POD_INGRESS_PORT: u16 = 15000;
pub const POD_EGRESS_PORT: u16 = 15001;
pub const POD_APP_PORT: u16 = 8080;

/// Writes `<out>/<workload>.yaml` for each workload of the chain, for workloads that reach each
/// other and the STS (`sts`, host:port) by DNS name, as in docker compose. Returns the files.
pub fn render_pod_sidecars(
    dev: &Path,
    template: &Path,
    filter: &FilterBuild,
    sts: &str,
    certs: &CertSource,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let (host, port) = sts.rsplit_once(':').ok_or_else(|| format!("{sts}: expected host:port"))?;
    let sts = Endpoint::dns(host, port.parse().map_err(|_| format!("{sts}: bad port"))?);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut files = Vec::new();
    for (i, (name, identity)) in CHAIN.iter().enumerate() {
        let spec = SidecarSpec {
            dev: dev.to_path_buf(),
            filter: filter.clone(),
            workload: name,
            identity,
            ingress: Endpoint::ip("0.0.0.0", POD_INGRESS_PORT),
            egress_port: POD_EGRESS_PORT,
            app_port: POD_APP_PORT,
            sts: vec![sts.clone()],
            next: CHAIN.get(i + 1).map(|(n, id)| (*n, *id, Endpoint::dns(n, POD_INGRESS_PORT))),
            tuning: Tuning::default(),
            certs: certs.clone(),
        };
        let file = out.join(format!("{name}.yaml"));
        std::fs::write(&file, render_sidecar(template, &spec)?).map_err(|e| format!("{}: {e}", file.display()))?;
        files.push(file);
    }
    Ok(files)
}

/// Fills the sidecar template (`envoy/sidecar.yaml`) for one workload.
pub fn render_sidecar(template: &Path, spec: &SidecarSpec) -> Result<String, String> {
    let tls = |peer: Option<&str>| spec.certs.tls_context(&spec.dev, spec.workload, peer);
    let mut vhosts = String::new();
    let mut clusters: String = spec.certs.cluster().map(|c| format!("  - {c}\n")).unwrap_or_default();
    if let Some((name, identity, at)) = &spec.next {
        let cluster = format!("peer-{identity}");
        let vhost = json!({"name": identity, "domains": [identity, format!("{identity}:*")],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "10s"}}]});
        let mut peer = json!({
            "name": cluster, "type": at.cluster_type(), "connect_timeout": "1s",
            "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": at.host, "port_value": at.port}}}}]}]},
        });
        if spec.tuning.ingress != Ingress::Plaintext {
            peer["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": tls(Some(&dev::workload_id(name)))}});
        }
        vhosts = format!("            - {vhost}\n");
        clusters.push_str(&format!("  - {peer}\n"));
    }
    let sts_endpoints: Value =
        spec.sts.iter().map(|e| json!({"endpoint": {"address": {"socket_address": {"address": e.host, "port_value": e.port}}}})).collect();
    let yaml_str = |v: &Value| v.to_string().replace('\'', "''");
    let template = std::fs::read_to_string(template).map_err(|e| format!("{}: {e}", template.display()))?;
    let template = weaken_ingress(template, spec.tuning.ingress)?;
    // The template carries both builds of the filter; the other one goes.
    let template = without(&template, if spec.filter.name() == "wasm" { "native" } else { "wasm" });
    let (template, otlp) = match spec.tuning.otlp {
        Some(at) => (template, at),
        None => (without(&template, "tracing"), ANY_PORT),
    };
    Ok(template
        .replace("${OTLP_ADDRESS}", &otlp.to_string())
        .replace("${OTLP_HOST}", &otlp.ip().to_string())
        .replace("${OTLP_PORT}", &otlp.port().to_string())
        .replace("${WORKLOAD}", spec.workload)
        .replace("${ADMIN_PORT}", "0")
        .replace("${INGRESS_ADDRESS}", &spec.ingress.host)
        .replace("${INGRESS_PORT}", &spec.ingress.port.to_string())
        .replace("${EGRESS_PORT}", &spec.egress_port.to_string())
        .replace("${APP_PORT}", &spec.app_port.to_string())
        .replace("${STS_CLUSTER_TYPE}", spec.sts.first().map_or("STATIC", Endpoint::cluster_type))
        .replace("${STS_ENDPOINTS}", &sts_endpoints.to_string())
        .replace("${INGRESS_TLS}", &tls(None).to_string())
        .replace("${STS_TLS}", &tls(Some(dev::STS_SPIFFE_ID)).to_string())
        .replace("${FILTER}", &spec.filter.path().display().to_string())
        .replace("${INBOUND_CONFIG}", &yaml_str(&inbound_plugin(spec)))
        .replace("${OUTBOUND_CONFIG}", &yaml_str(&outbound_plugin(spec)))
        .replace("${EGRESS_VIRTUAL_HOSTS}\n", &vhosts)
        .replace("${PEER_CLUSTERS}\n", &clusters))
}

/// The template without its `block`s (from a `# <block>: begin` line through the next
/// `# <block>: end` line): tracing for sidecars with no collector to send spans to, and the build
/// of the filter not chosen (the markers of blocks kept stay, as comments).
fn without(template: &str, block: &str) -> String {
    let (begin, end) = (format!("# {block}: begin"), format!("# {block}: end"));
    let mut out = String::with_capacity(template.len());
    let mut skipping = false;
    for line in template.lines() {
        let marker = line.trim_start();
        if marker.starts_with(&begin) {
            skipping = true;
        } else if marker.starts_with(&end) {
            skipping = false;
        } else if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The template's ingress asks for mTLS with a client certificate; tests of a mesh that does not
/// (Istio's PERMISSIVE mode, a TLS-only ingress) make it ask for less.
fn weaken_ingress(template: String, ingress: Ingress) -> Result<String, String> {
    const REQUIRED: &str = "          require_client_certificate: true\n";
    const TLS_START: &str = "    - transport_socket:\n";
    const TLS_END: &str = "      filters:\n";
    match ingress {
        Ingress::Mtls => Ok(template),
        Ingress::TlsClientCertOptional if template.contains(REQUIRED) => {
            Ok(template.replacen(REQUIRED, "          require_client_certificate: false\n", 1))
        }
        Ingress::Plaintext => {
            let start = template.find(TLS_START).ok_or("sidecar template: no ingress transport_socket")?;
            let end = start + template[start..].find(TLS_END).ok_or("sidecar template: no ingress filters")?;
            Ok(format!("{}    - filters:\n{}", &template[..start], &template[end + TLS_END.len()..]))
        }
        Ingress::TlsClientCertOptional => Err("sidecar template: no require_client_certificate".into()),
    }
}

const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Starts the STS binary with `config` (a dev trust domain's `sts.toml`), on `listen` (port 0:
/// any); its event lines go to `log`.
pub fn start_sts(paths: &Paths, config: &Path, log: &Path, listen: SocketAddr) -> Result<(Child, SocketAddr, SocketAddr), String> {
    let mut child = Command::new(&paths.sts_bin)
        .args(sts_args(config, &listen.to_string(), "127.0.0.1:0"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", paths.sts_bin.display()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("the STS's output was not captured".into());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let log = log.to_path_buf();
    // The STS's decision log goes to a file the demo can show; the first line says where it listens.
    std::thread::spawn(move || {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(log).ok();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"kind\":\"listening\"") {
                let _ = tx.send(line.clone());
            }
            if let Some(f) = out.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the STS did not start".to_string());
    };
    let v: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let addr = v["token_endpoint"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("https://")
        .trim_end_matches("/token")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let admin = v["admin"].as_str().unwrap_or("").trim_start_matches("http://").parse().map_err(|e| format!("admin: {e}"))?;
    Ok((child, addr, admin))
}

impl Demo {
    /// Starts everything and waits until every sidecar has fetched the STS's keys.
    pub async fn start(paths: Paths) -> Result<Demo, String> {
        Demo::start_tuned(paths, Tuning::default()).await
    }

    pub async fn start_tuned(paths: Paths, tuning: Tuning) -> Result<Demo, String> {
        paths.check()?;
        let dev = paths.work.join("dev");
        dev::init(&dev, false)?;
        let toml = std::fs::read_to_string(dev.join("sts.toml")).map_err(|e| e.to_string())?;
        let mut tuned = toml.clone();
        if let Some((every, lead)) = tuning.rotation {
            tuned = tuned
                .replace("rotate_every_seconds = 86400", &format!("rotate_every_seconds = {every}"))
                .replace("publish_lead_seconds = 600", &format!("publish_lead_seconds = {lead}"));
        }
        if let Some(alg) = tuning.sts_alg {
            tuned = tuned.replace("alg = \"EdDSA\"", &format!("alg = \"{alg}\""));
        }
        if let Some(at) = tuning.otlp {
            tuned.push_str(&format!("\n[telemetry]\notlp_endpoint = \"http://{at}/v1/traces\"\nexport_delay_ms = 200\n"));
        }
        if let Some(url) = &tuning.database {
            tuned = format!("database = \"{url}\"\n{tuned}");
            let replica = tuned.replace("state_dir = \"state\"", "state_dir = \"state-b\"");
            std::fs::write(dev.join("sts-b.toml"), replica).map_err(|e| e.to_string())?;
        }
        if tuned != toml {
            std::fs::write(dev.join("sts.toml"), tuned).map_err(|e| e.to_string())?;
        }
        let (sts_child, sts, sts_admin) = start_sts(&paths, &dev.join("sts.toml"), &paths.work.join("sts.log"), ANY_PORT)?;
        let (replica_child, sts_replica) = match tuning.database {
            Some(_) => {
                let (c, a, _) = start_sts(&paths, &dev.join("sts-b.toml"), &paths.work.join("sts-b.log"), ANY_PORT)?;
                (Some(c), Some(a))
            }
            None => (None, None),
        };

        let mut workloads = Vec::new();
        let mut apps = Vec::new();
        for (name, identity) in CHAIN {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
            let app = listener.local_addr().map_err(|e| e.to_string())?;
            // The sidecar's listeners take ports of the kernel's choosing; known once it runs.
            let unknown = SocketAddr::from(([127, 0, 0, 1], 0));
            workloads.push(Workload { name, identity, app, ingress: unknown, egress: unknown });
            apps.push(listener);
        }
        let mut demo = Demo {
            dev,
            sts,
            sts_admin,
            workloads,
            sts_child: std::sync::Mutex::new(Some(sts_child)),
            replica_child,
            sts_replica,
            envoys: Vec::new(),
            paths,
            tuning,
        };
        // Last hop first: each sidecar's next hop is already listening when it is configured.
        for i in (0..demo.workloads.len()).rev() {
            let (ingress, egress) = demo.start_envoy(i).await?;
            let w = &mut demo.workloads[i];
            (w.ingress, w.egress) = (ingress, egress);
        }
        for (i, listener) in apps.into_iter().enumerate() {
            let w = &demo.workloads[i];
            let next = demo.workloads.get(i + 1).map(|n| Next {
                egress: w.egress,
                authority: n.identity.to_string(),
                // The on-call agent speaks A2A to the investigation agent, which speaks MCP.
                path: if n.name == "mcp-server" { "/mcp".into() } else { "/a2a".into() },
                a2a: n.name != "mcp-server",
                propagates: demo.tuning.app_propagates.unwrap_or(apps::TRACE_CONTEXT),
            });
            tokio::spawn(apps::serve(listener, w.identity.to_string(), next, w.name == "mcp-server"));
        }
        for w in demo.workloads.clone() {
            demo.wait_for_keys(&w).await?;
        }
        Ok(demo)
    }

    /// Starts workload `i`'s Envoy; its ingress and egress addresses.
    async fn start_envoy(&mut self, i: usize) -> Result<(SocketAddr, SocketAddr), String> {
        let w = self.workloads[i].clone();
        let next = self.workloads.get(i + 1).cloned();
        let spec = SidecarSpec {
            dev: self.dev.clone(),
            filter: self.paths.filter.clone(),
            workload: w.name,
            identity: w.identity,
            ingress: Endpoint::ip("127.0.0.1", 0),
            egress_port: 0,
            app_port: w.app.port(),
            sts: std::iter::once(self.sts).chain(self.sts_replica).map(|a| Endpoint::ip("127.0.0.1", a.port())).collect(),
            next: next.map(|n| (n.name, n.identity, Endpoint::ip("127.0.0.1", n.ingress.port()))),
            tuning: self.tuning.clone(),
            certs: CertSource::Files,
        };
        let config = render_sidecar(&self.paths.template, &spec)?;
        let dir = self.paths.work.join("envoy");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cfg_path = dir.join(format!("{}.yaml", w.name));
        std::fs::write(&cfg_path, config).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{}.log", w.name));
        let envoy = Envoy::start(&self.paths.envoy, &cfg_path, "info", &log, &["ingress", "egress"])
            .await
            .map_err(|e| format!("the {} sidecar: {e}", w.name))?;
        let (ingress, egress) = (envoy.listener("ingress"), envoy.listener("egress"));
        self.envoys.push((w.name, envoy));
        match (ingress, egress) {
            (Some(i), Some(e)) => Ok((i, e)),
            _ => Err(format!("the {} sidecar has no ingress or egress listener", w.name)),
        }
    }

    /// Reads one of the filter's counters from a sidecar's admin endpoint.
    pub async fn counter(&self, w: &Workload, name: &str) -> u64 {
        match self.envoy(w.name) {
            Some(e) => e.stat(name).await,
            None => 0,
        }
    }

    async fn wait_for_keys(&self, w: &Workload) -> Result<(), String> {
        // Generous: on a loaded 2-core machine, V8 compiling the module for every sidecar of every
        // test running at once can take a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.counter(w, "actorchain.jwks.fetch_ok").await == 0 || !self.judges_tokens(w).await {
            if Instant::now() > deadline || !self.envoy_running(w.name) {
                let log = std::fs::read_to_string(self.paths.work.join(format!("envoy/{}.log", w.name))).unwrap_or_default();
                let said: Vec<&str> = log.lines().filter(|l| l.contains("jwks") || l.contains("wasm") || l.contains("error")).collect();
                let tail = said[said.len().saturating_sub(20)..].join("\n");
                return Err(format!("the {} sidecar never fetched the STS keys; its log says:\n{tail}", w.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether the sidecar's worker judges tokens yet: a garbled one is refused (or, observing,
    /// would be) as malformed, not as `keys_not_loaded`. The fetch counter alone can run ahead of
    /// the worker: the main thread's VM may fetch before the worker's has the keys.
    async fn judges_tokens(&self, w: &Workload) -> bool {
        let h = [("authorization", "Bearer readiness-probe")];
        let _ = match self.tuning.ingress {
            Ingress::Plaintext => self.call_anonymous(w.name, false, "/", &h, Value::Null).await,
            _ => self.call(w.name, "frontend", "/", &h, Value::Null).await,
        };
        self.counter(w, "token_malformed").await > 0
    }

    fn envoy(&self, name: &str) -> Option<&Envoy> {
        self.envoys.iter().find(|(n, _)| *n == name).map(|(_, e)| e)
    }

    /// Whether a workload's Envoy still runs.
    fn envoy_running(&self, name: &str) -> bool {
        self.envoy(name).is_some_and(Envoy::running)
    }

    /// The process id of a workload's Envoy, for reading its memory.
    pub fn envoy_pid(&self, name: &str) -> Option<u32> {
        self.envoy(name).map(Envoy::pid)
    }

    pub fn workload(&self, name: &str) -> Result<&Workload, String> {
        self.workloads.iter().find(|w| w.name == name).ok_or_else(|| format!("no workload {name} in the demo"))
    }

    /// Client TLS presenting `as_workload`'s X.509-SVID, or no certificate at all.
    fn tls(&self, as_workload: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
        let bundle = svid::load_certs(&self.dev.join("bundle.pem")).map_err(|e| e.to_string())?;
        let identity = match as_workload {
            Some(w) => Some((
                svid::load_certs(&self.dev.join(format!("svid/{w}.pem"))).map_err(|e| e.to_string())?,
                svid::load_key(&self.dev.join(format!("svid/{w}-key.pem"))).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        Ok(Arc::new(svid::client_config(&bundle, identity).map_err(|e| e.to_string())?))
    }

    /// A keep-alive connection to `to`'s ingress over mTLS, presenting `as_workload`'s SVID.
    pub async fn ingress(&self, to: &str, as_workload: &str) -> Result<Connection, String> {
        let server_name = format!("{to}.{}", dev::TRUST_DOMAIN);
        Connection::connect(self.workload(to)?.ingress, &server_name, self.tls(Some(as_workload))?).await
    }

    /// A keep-alive connection to the STS, presenting `as_workload`'s SVID or no certificate.
    pub async fn sts_connection(&self, as_workload: Option<&str>) -> Result<Connection, String> {
        Connection::connect(self.sts, "localhost", self.tls(as_workload)?).await
    }

    /// A request to `to`'s ingress over mTLS, presenting `as_workload`'s SVID (as a peer sidecar,
    /// or the front end for the first hop would).
    pub async fn call(
        &self,
        to: &str,
        as_workload: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<(u16, Value), String> {
        let mut conn = self.ingress(to, as_workload).await?;
        let r = conn.request("POST", path, headers, body.to_string().into_bytes()).await?;
        Ok((r.status, serde_json::from_str(&r.body).unwrap_or(Value::String(r.body))))
    }

    /// A request to `to`'s ingress from a peer that proves no identity: TLS without a client
    /// certificate, or plaintext (where a test's ingress accepts that).
    pub async fn call_anonymous(
        &self,
        to: &str,
        tls: bool,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<(u16, Value), String> {
        let body = body.to_string().into_bytes();
        let (status, b) = if tls {
            let server_name = format!("{to}.{}", dev::TRUST_DOMAIN);
            let r = Connection::connect(self.workload(to)?.ingress, &server_name, self.tls(None)?)
                .await?
                .request("POST", path, headers, body)
                .await?;
            (r.status, r.body.into_bytes().into())
        } else {
            apps::http(self.workload(to)?.ingress, "POST", to, path, headers, body).await?
        };
        Ok((status, serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()))))
    }

    /// Requests a workload's inbound filter has decided on, accepted or refused.
    async fn judged(&self, w: &Workload) -> u64 {
        self.counter(w, "actorchain.inbound.accepted").await + self.counter(w, "actorchain.inbound.refused").await
    }

    /// A request to `to`'s ingress whose body is held back until [`HeldCall::finish`]: its headers
    /// have been judged by the sidecar and the app is waiting for the rest, so the request is in
    /// flight at `to` (for the race tests). Returns once `to`'s sidecar has accepted or refused it.
    pub async fn call_held(
        &self,
        to: &str,
        as_workload: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<HeldCall, String> {
        use http_body_util::BodyExt;
        let w = self.workload(to)?.clone();
        let before = self.judged(&w).await;
        let tcp = tokio::net::TcpStream::connect(w.ingress).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(format!("{to}.{}", dev::TRUST_DOMAIN)).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls(Some(as_workload))?).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let body = body.to_string().into_bytes();
        let (sender, channel) = http_body_util::channel::Channel::<bytes::Bytes, std::convert::Infallible>::new(1);
        let mut req = hyper::Request::builder().method("POST").uri(path).header("host", to).header("content-length", body.len());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(channel).map_err(|e| e.to_string())?;
        let answer = tokio::spawn(async move {
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let b = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((status, serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()))))
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.judged(&w).await == before {
            if Instant::now() > deadline {
                return Err(format!("the {to} sidecar never judged the held request"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(HeldCall { sender, body, answer })
    }

    /// A plain request to a workload's egress listener, as its app would send it.
    pub async fn call_egress(
        &self,
        from: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<(u16, Value), String> {
        let (status, b) = apps::http(self.workload(from)?.egress, "POST", authority, path, headers, body.to_string().into_bytes()).await?;
        Ok((status, serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()))))
    }

    /// An exchange straight at the STS as `workload`, the way its sidecar makes one.
    pub async fn exchange(&self, workload: &str, params: &[(&str, &str)]) -> Result<Reply, String> {
        let mut conn = self.sts_connection(Some(workload)).await?;
        conn.post_form("/token", params).await
    }

    /// A person's token from the dev IdP, addressed to the on-call agent.
    pub fn person_token(&self, sub: &str, scope: &str, ttl: u64) -> Result<String, String> {
        dev::person_token(&self.dev, sub, "oncall-agent", scope, ttl, Some("INC-4711"), actorchain_sts::server::unix_now())
    }

    /// A person's token from the partner's IdP, addressed to the on-call agent.
    pub fn partner_person_token(&self, sub: &str, scope: &str, ttl: u64) -> Result<String, String> {
        let now = actorchain_sts::server::unix_now();
        dev::person_token_from(&self.dev, dev::PARTNER_IDP, sub, "oncall-agent", scope, ttl, None, now)
    }

    /// Revokes a token, session or agent at the STS, as the admin would, saying why.
    pub async fn revoke(&self, kind: &str, value: &str) -> Result<Value, String> {
        self.admin_post("/admin/revocations", json!({"kind": kind, "value": value, "reason": "demo: incident INC-4711"})).await
    }

    /// Revokes a person: the subject as the issuer that vouches for them names them.
    pub async fn revoke_person(&self, issuer: &str, sub: &str) -> Result<Value, String> {
        self.admin_post("/admin/revocations", json!({"kind": "person", "issuer": issuer, "value": sub, "reason": "demo: laptop stolen"}))
            .await
    }

    /// Lifts revocation `id`, saying why.
    pub async fn lift(&self, id: u64, reason: &str) -> Result<Value, String> {
        self.admin_post("/admin/revocations/lift", json!({"id": id, "reason": reason})).await
    }

    async fn admin_post(&self, path: &str, ask: Value) -> Result<Value, String> {
        let mut conn = self.sts_connection(Some("admin")).await?;
        let body = ask.to_string().into_bytes();
        let r = conn.request("POST", path, &[("content-type", "application/json")], body).await?;
        if r.status != 200 {
            return Err(format!("refused: {} {}", r.status, r.body));
        }
        serde_json::from_str(&r.body).map_err(|e| e.to_string())
    }

    /// The STS ledger's delegation tree of a session, as the admin API renders it.
    pub async fn ledger_tree(&self, sid: &str) -> Result<String, String> {
        let v = self.ledger_query(&format!("sid={sid}")).await?;
        Ok(v["tree"].as_str().unwrap_or_default().to_string())
    }

    /// The STS ledger's records for a query (`sub=...&issuer=...`, `agent=...`), as the admin API answers.
    pub async fn ledger_query(&self, query: &str) -> Result<Value, String> {
        let mut conn = self.sts_connection(Some("admin")).await?;
        let r = conn.request("GET", &format!("/admin/ledger?{query}"), &[], Vec::new()).await?;
        serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))
    }

    /// A topology someone else started (docker compose): the dev trust domain as mounted here,
    /// the STS, each workload's ingress and the egress listeners reachable from here (others,
    /// and the apps, are inside their workloads: port 0, unreachable). Nothing is started or stopped.
    pub fn attach(
        dev: PathBuf,
        sts: SocketAddr,
        ingress: &[(String, SocketAddr)],
        egress: &[(String, SocketAddr)],
    ) -> Result<Demo, String> {
        let inside = SocketAddr::from(([127, 0, 0, 1], 0));
        let find = |list: &[(String, SocketAddr)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
        let mut workloads = Vec::new();
        for (name, identity) in CHAIN {
            let at = find(ingress, name).ok_or(format!("no --ingress for {name}"))?;
            workloads.push(Workload { name, identity, app: inside, ingress: at, egress: find(egress, name).unwrap_or(inside) });
        }
        let none = PathBuf::new();
        let paths = Paths {
            sts_bin: none.clone(),
            envoy: none.clone(),
            filter: FilterBuild::Wasm(none.clone()),
            template: none,
            work: dev.clone(),
        };
        Ok(Demo {
            dev,
            sts,
            // Inside the compose network; not reachable from here.
            sts_admin: inside,
            sts_replica: None,
            workloads,
            sts_child: std::sync::Mutex::new(None),
            replica_child: None,
            envoys: Vec::new(),
            paths,
            tuning: Tuning::default(),
        })
    }

    /// Starts the STS again where the sidecars expect it, on the same state.
    pub fn restart_sts(&self) -> Result<(), String> {
        self.stop_sts();
        let (child, _, _) = start_sts(&self.paths, &self.dev.join("sts.toml"), &self.paths.work.join("sts.log"), self.sts)?;
        *self.sts_child.lock().map_err(|_| "STS lock poisoned")? = Some(child);
        Ok(())
    }

    /// Kills the STS (SIGKILL: no shutdown, no flush).
    pub fn stop_sts(&self) {
        if let Some(mut c) = self.sts_child.lock().ok().and_then(|mut g| g.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
