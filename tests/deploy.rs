//! The deployment files, checked without a container engine: `docker-compose.yml` through a
//! real compose implementation (Debian's `docker-compose`, `config`), its services against what
//! `make demo` runs, and the sidecar configurations it renders through Envoy's own validator.

use std::path::{Path, PathBuf};
use std::process::Command;

use actorchain_demo::topology::{
    envoy_args, render_pod_sidecars, sts_args, CertSource, Paths, CHAIN, POD_APP_PORT, POD_EGRESS_PORT, POD_INGRESS_PORT,
};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The compose file as `docker-compose config` resolves it (anchors merged, defaults applied).
fn compose_config() -> Yaml {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(root().join("docker-compose.yml"))
        .arg("config")
        .output()
        .expect("docker-compose (Debian's package; `make test` installs it)");
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
    YamlLoader::load_from_str(&String::from_utf8_lossy(&out.stdout)).unwrap().remove(0)
}

fn command(service: &Yaml) -> Vec<String> {
    service["command"].as_vec().unwrap_or(&Vec::new()).iter().filter_map(|a| a.as_str().map(String::from)).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn compose_runs_the_demo_topology_with_the_demos_commands() {
    let c = compose_config();
    let services = &c["services"];
    let envoy_version = std::fs::read_to_string(root().join("Makefile"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION := ").map(String::from))
        .unwrap();

    // The STS exactly as the demo starts it, on the container's interfaces.
    let mut sts = vec!["actorchain-sts".to_string()];
    sts.extend(sts_args(Path::new("/domain/sts.toml"), "0.0.0.0:8443", "0.0.0.0:8444"));
    assert_eq!(command(&services["sts"]), sts);

    for (i, (name, identity)) in CHAIN.iter().enumerate() {
        // Each sidecar: the official Envoy image at the version the tests run, started as the demo starts it.
        let envoy = &services[*name];
        assert_eq!(envoy["image"].as_str(), Some(format!("envoyproxy/envoy:v{envoy_version}").as_str()), "{name}");
        let mut args = vec!["envoy".to_string()];
        args.extend(envoy_args(&PathBuf::from(format!("/domain/envoy/{name}.yaml"))));
        assert_eq!(command(envoy), args, "{name}");
        // Its app shares its network, as in a pod, and talks to the next hop through the egress.
        let app = &services[format!("{name}-app").as_str()];
        assert_eq!(app["network_mode"].as_str(), Some(format!("service:{name}").as_str()));
        let mut want = strings(&["actorchain-demo", "app", "--name", identity, "--listen", &format!("127.0.0.1:{POD_APP_PORT}")]);
        match CHAIN.get(i + 1) {
            Some((next, next_id)) => {
                let egress = format!("127.0.0.1:{POD_EGRESS_PORT}");
                want.extend(strings(&["--next-egress", &egress, "--next-authority", next_id, "--next-path"]));
                // Agents speak A2A to agents, MCP to the MCP server.
                want.extend(strings(if *next == "mcp-server" { &["/mcp"][..] } else { &["/a2a", "--next-a2a"][..] }));
            }
            None => want.push("--mcp".into()),
        }
        assert_eq!(command(app), want, "{name}-app");
    }
    let init = command(&services["init"]).join(" ");
    assert!(init.contains("actorchain-demo render-sidecars") && init.contains("--sts sts:8443"), "{init}");
    assert!(command(&services["scenario"]).contains(&format!("oncall=oncall:{POD_INGRESS_PORT}")));
}

#[test]
fn rendered_sidecars_pass_envoys_validation_with_files_and_with_spire() {
    let paths = Paths::workspace(&root(), "debug", PathBuf::new());
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("domain");
    actorchain_sts::dev::init(&dev, false).unwrap();
    let spire = CertSource::SpireAgent(PathBuf::from("/run/spire/sockets/agent.sock"));
    for (kind, certs) in [("files", CertSource::Files), ("spire", spire)] {
        let files = render_pod_sidecars(&dev, &paths.template, &paths.filter, "sts:8443", &certs, &dir.path().join(kind)).unwrap();
        assert_eq!(files.len(), CHAIN.len());
        for f in files {
            let out = Command::new(&paths.envoy).args(["--mode", "validate"]).args(envoy_args(&f)).output().unwrap();
            let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && log.contains("OK"), "{}: {log}", f.display());
            let text = std::fs::read_to_string(&f).unwrap();
            // Reached by name, not by loopback address, and listening beyond loopback.
            assert!(
                text.contains("type: STRICT_DNS") && text.contains(r#""address":"sts""#) && text.contains("address: 0.0.0.0"),
                "{text}"
            );
            let sds = text.contains("tls_certificate_sds_secret_configs") && text.contains("\"name\":\"spiffe://actorchain.dev\"");
            assert_eq!(sds, kind == "spire", "{kind}: {text}");
            assert_eq!(text.contains("svid/"), kind == "files", "{kind}: no key file in a SPIRE configuration");
        }
    }
}

/// A YAML value as JSON, for handing a manifest's embedded configuration to our own parsers.
fn json(y: &Yaml) -> serde_json::Value {
    match y {
        Yaml::Hash(h) => serde_json::Value::Object(
            h.iter().map(|(k, v)| (k.as_str().map(String::from).unwrap_or_else(|| format!("{k:?}")), json(v))).collect(),
        ),
        Yaml::Array(a) => serde_json::Value::Array(a.iter().map(json).collect()),
        Yaml::String(s) => s.clone().into(),
        Yaml::Integer(i) => (*i).into(),
        Yaml::Boolean(b) => (*b).into(),
        Yaml::Real(r) => r.parse::<f64>().map(serde_json::Value::from).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

fn manifests(file: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&std::fs::read_to_string(root().join("deploy/istio").join(file)).unwrap()).unwrap()
}

#[test]
fn istio_manifests_pass_the_published_schemas() {
    let files: Vec<PathBuf> = ["sts.yaml", "mesh.yaml", "wasmplugins.yaml"].iter().map(|f| root().join("deploy/istio").join(f)).collect();
    let out = Command::new("node")
        .arg(root().join("deploy/validate/validate.mjs"))
        .args(&files)
        .output()
        .expect("node (the machine's Node.js; `make test` installs the schema packages)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn istio_manifests_hold_configurations_our_parsers_accept() {
    let sts = manifests("sts.yaml");
    let cm = sts.iter().find(|d| d["kind"].as_str() == Some("ConfigMap")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["sts.toml", "registry.toml"] {
        std::fs::write(dir.path().join(name), cm["data"][name].as_str().unwrap()).unwrap();
    }
    let cfg = actorchain_sts::config::Config::load(&dir.path().join("sts.toml")).unwrap();
    let registry = actorchain_sts::registry::Registry::parse(cm["data"]["registry.toml"].as_str().unwrap()).unwrap();
    // The Service the plugins name as their STS cluster is the one deployed.
    let svc = sts.iter().find(|d| d["kind"].as_str() == Some("Service")).unwrap();
    let cluster = format!(
        "outbound|{}||{}.{}.svc.cluster.local",
        svc["spec"]["ports"][0]["port"].as_i64().unwrap(),
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    let sts_pod = &sts.iter().find(|d| d["kind"].as_str() == Some("StatefulSet")).unwrap()["spec"]["template"];
    assert_eq!(
        sts_pod["metadata"]["annotations"]["sidecar.istio.io/inject"].as_str(),
        Some("false"),
        "the STS sees callers' certificates itself"
    );

    // Every namespace with actorchain plugins takes mutual TLS only (no plaintext peer can
    // present a stolen token), and the inbound plugins refuse a peer without a certificate too.
    let strict: Vec<String> = manifests("mesh.yaml")
        .iter()
        .filter(|d| d["kind"].as_str() == Some("PeerAuthentication") && d["spec"]["mtls"]["mode"].as_str() == Some("STRICT"))
        .filter(|d| d["spec"]["selector"].is_badvalue())
        .filter_map(|d| d["metadata"]["namespace"].as_str().map(String::from))
        .collect();
    for p in manifests("wasmplugins.yaml") {
        let ns = p["metadata"]["namespace"].as_str().unwrap();
        assert!(strict.iter().any(|s| s == ns), "namespace {ns} has no STRICT PeerAuthentication");
    }
    for p in manifests("wasmplugins.yaml") {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(p["spec"]["failStrategy"].as_str(), Some("FAIL_CLOSE"), "{name}");
        let plugin = json(&p["spec"]["pluginConfig"]);
        actorchain::config::Config::parse(plugin.to_string().as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mode = p["spec"]["match"][0]["mode"].as_str().unwrap();
        assert_eq!((mode, plugin["mode"].as_str().unwrap()), (mode, if mode == "SERVER" { "inbound" } else { "outbound" }), "{name}");
        assert_eq!(plugin["sts"]["cluster"].as_str(), Some(cluster.as_str()), "{name}");
        if mode == "SERVER" {
            assert_eq!(plugin["issuer"].as_str(), Some(cfg.issuer.as_str()), "{name}");
            let binding = plugin.get("sender_binding").and_then(|b| b.as_str()).unwrap_or("required");
            assert_eq!(binding, "required", "{name}");
        } else {
            // The agent exists in the registry and may call every audience it is configured for.
            let agent = registry.agent(plugin["agent"].as_str().unwrap()).unwrap_or_else(|| panic!("{name}: agent not registered"));
            for dest in plugin["destinations"].as_object().unwrap().values() {
                let audience = dest.as_str().or(dest["audience"].as_str()).unwrap();
                let grant = agent.grant_for(audience).unwrap_or_else(|| panic!("{name}: {audience} not granted"));
                // A destination's scope beyond the grant would be refused as widening.
                let cap = actorchain_token::ScopeSet::parse(dest["scope"].as_str().unwrap_or("")).unwrap();
                assert!(cap.is_subset(grant), "{name}: {audience} asks for {cap} beyond {grant}");
            }
        }
    }
}
