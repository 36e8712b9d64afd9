//! The deployment files, checked by parsing (no Docker engine runs here): the compose files
//! name every service with its command, volume, healthcheck and read-only configuration, and
//! the example configuration files load with the services' own parsers.

use std::path::PathBuf;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v.apply_merge().unwrap();
    // merge keys nested one level down (environment: <<: *env)
    if let Some(services) = v.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, s) in services.iter_mut() {
            if let Some(env) = s.get_mut("environment") {
                env.apply_merge().unwrap();
            }
        }
    }
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_compose_runs_every_service_with_volumes_healthchecks_and_config() {
    let c = compose("docker-compose.yml");
    let services = c["services"].as_mapping().unwrap();
    let volumes = c["volumes"].as_mapping().unwrap();
    let expect = [
        (
            "intake",
            "incident-intake",
            "8080",
            "intake-data",
            vec!["priority-matrix.toml", "intake-sources.toml"],
        ),
        (
            "sla",
            "incident-sla",
            "8081",
            "sla-data",
            vec!["sla-policy.toml"],
        ),
        (
            "notifier",
            "incident-notifier",
            "8082",
            "notifier-data",
            vec!["routes.toml"],
        ),
    ];
    for (name, binary, http_port, volume, configs) in expect {
        let s = &services[&Value::from(name)];
        assert_eq!(strings(&s["command"]), [binary], "{name} command");
        assert_eq!(s["image"], "incident:latest", "{name}: one image for all");
        assert_eq!(s["build"]["dockerfile"], "deploy/Dockerfile");
        assert_eq!(s["restart"], "unless-stopped");
        let grace = s["stop_grace_period"].as_str().unwrap();
        assert!(
            grace.trim_end_matches('s').parse::<u32>().unwrap() >= 10,
            "{name}: grace {grace}"
        );
        let health = strings(&s["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!("127.0.0.1:{http_port}/readyz")),
            "{name}: {health}"
        );
        assert_eq!(s["environment"]["NATS_URL"], "nats://nats:4222", "{name}");
        assert_eq!(s["environment"]["DATA_DIR"], "/var/lib/incident");
        assert!(
            s["environment"]["HTTP_ADDR"]
                .as_str()
                .unwrap()
                .ends_with(http_port)
        );
        assert_eq!(s["depends_on"]["nats"]["condition"], "service_healthy");
        let mounts = strings(&s["volumes"]);
        assert!(
            mounts.contains(&format!("{volume}:/var/lib/incident")),
            "{name}: {mounts:?}"
        );
        assert!(volumes.contains_key(Value::from(volume)));
        for cfg in configs {
            let mount = mounts
                .iter()
                .find(|m| m.starts_with(&format!("./deploy/{cfg}:")))
                .unwrap_or_else(|| panic!("{name} mounts deploy/{cfg}"));
            assert!(mount.ends_with(":ro"), "{mount} is read-only");
            assert!(
                root().join("deploy").join(cfg).is_file(),
                "deploy/{cfg} exists"
            );
        }
    }
    let nats = &services[&Value::from("nats")];
    let cmd = strings(&nats["command"]);
    assert!(
        cmd.contains(&"-js".to_owned()) && cmd.contains(&"-m".to_owned()),
        "{cmd:?}"
    );
    assert!(strings(&nats["volumes"]).contains(&"nats-data:/data".to_owned()));
    assert!(
        strings(&nats["healthcheck"]["test"])
            .join(" ")
            .contains("8222/healthz")
    );
}

#[test]
fn the_cluster_profile_runs_three_nats_nodes_and_r3_streams() {
    let c = compose("deploy/docker-compose.cluster.yml");
    let services = c["services"].as_mapping().unwrap();
    for n in 1..=3 {
        let node = &services[&Value::from(format!("nats-{n}"))];
        let cmd = strings(&node["command"]).join(" ");
        assert!(
            cmd.contains("--cluster_name incident") && cmd.contains("--routes"),
            "{cmd}"
        );
        assert!(cmd.contains("-js"));
    }
    for name in ["intake", "sla", "notifier"] {
        let s = &services[&Value::from(name)];
        assert_eq!(s["environment"]["NATS_STREAM_REPLICAS"], "3", "{name}");
        assert!(
            s["environment"]["NATS_URL"]
                .as_str()
                .unwrap()
                .contains("nats-3"),
            "{name}"
        );
    }
}

#[test]
fn the_dockerfile_builds_every_binary_and_runs_as_non_root() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for bin in [
        "incident-intake",
        "incident-sla",
        "incident-notifier",
        "incidentctl",
    ] {
        assert!(text.contains(&format!("target/release/{bin}")), "{bin}");
    }
    assert!(
        text.contains("FROM debian:bookworm-slim"),
        "a small runtime stage"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "non-root user"
    );
}

#[test]
fn the_example_configuration_loads() {
    let read = |f: &str| std::fs::read_to_string(root().join("deploy").join(f)).unwrap();
    incident_sla::PolicySet::from_toml(&read("sla-policy.toml")).unwrap();
    incident_intake::sources::Sources::from_toml(&read("intake-sources.toml")).unwrap();
    incident_domain::PriorityMatrix::from_toml(&read("priority-matrix.toml")).unwrap();
    let routes = incident_notifier::routes::Routes::from_toml(&read("routes.toml")).unwrap();
    assert!(routes.oncall("infra").is_some());
    let am: Value = serde_yaml::from_str(&read("alertmanager.yml")).unwrap();
    let url = am["receivers"][0]["webhook_configs"][0]["url"]
        .as_str()
        .unwrap();
    assert!(url.ends_with("/v1/alertmanager"), "{url}");
}
