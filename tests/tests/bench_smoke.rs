//! The benchmark binary still runs every measurement and prints every key on its last line
//! (tiny sizes: the figures mean nothing here; BENCHMARKS.md has the real ones).

use incident_testkit::bin_path;

#[test]
fn incident_bench_runs_every_measurement() {
    let out = std::process::Command::new(bin_path("incident-bench"))
        .args(["--smoke", "--json"])
        .output()
        .expect("run incident-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in [
        "nats_intake_per_s",
        "jetstream_publish_per_s",
        "nats_intake_ratio",
        "sla_catch_up_per_s",
        "jetstream_consume_per_s",
        "sla_catch_up_ratio",
        "grpc_open_per_s",
        "grpc_unary_baseline_per_s",
        "grpc_open_ratio",
        "rebuild_per_s",
        "raw_read_per_s",
        "rebuild_ratio",
        "e2e_p99_ms",
        "timer_late_p99_ms",
        "timer_raw_late_p99_ms",
        "clocks_1m_rss_mib",
    ] {
        assert!(v[key].is_number(), "{key} missing in {last}");
    }
    assert!(
        v["sla_catch_up_ratio"].as_f64() > Some(0.0),
        "the catch-up measured: {last}"
    );
    assert_eq!(
        v["e2e_delivered"], v["e2e_sent"],
        "every incident reached the webhook"
    );
}
