//! Container logs: Docker json-file and CRI files (under /var/log/pods and
//! through kubelet's /var/log/containers links) give container labels and
//! join the lines the runtimes split.

use super::{append, config, hash, messages, scrape_until, value, MALFORMED};
use crate::common::{require_bpf, serial, Agent, TempDir};
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn docker_json_and_cri_files_give_container_labels_and_joined_lines() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-containers");
    let d = &dir.0;
    let docker_id = "a1".repeat(32);
    let cri_id = "c3".repeat(32);
    let agent = Agent::start_with_yaml(&config(
        d,
        &[
            format!("{}/docker/containers/*/*-json.log", d.display()),
            format!("{}/pods/*/nginx/*.log", d.display()),
            format!("{}/containers/*.log", d.display()),
        ],
        "",
    ));
    // Docker json-file: 4 requests, a line Docker split in two, a bad line.
    let docker_dir = d.join(format!("docker/containers/{docker_id}"));
    std::fs::create_dir_all(&docker_dir).unwrap();
    let rec = |log: &str, stream: &str| {
        format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": "2026-11-22T02:44:09.000000001Z"})
        )
    };
    let mut docker = String::new();
    for i in 0..4 {
        docker += &rec(&format!("GET /api/items/{i} 200 {}ms\n", i + 1), "stdout");
    }
    docker += &rec("ERROR upstream \"inventory\" timed out after ", "stderr");
    docker += &rec("30s\n", "stderr");
    docker += "this is not json\n";
    append(&docker_dir.join(format!("{docker_id}-json.log")), &docker);

    // CRI, found under /var/log/pods: two partial parts and a final one.
    let pod_dir = d.join("pods/prod_web-1_0f0e0d0c-1111-2222-3333-444455556666");
    std::fs::create_dir_all(pod_dir.join("nginx")).unwrap();
    std::fs::create_dir_all(pod_dir.join("sidecar")).unwrap();
    let cri = |stream: &str, tag: &str, text: &str| {
        format!("2026-11-22T02:44:09.123456789Z {stream} {tag} {text}\n")
    };
    let mut nginx = String::new();
    for i in 0..3 {
        nginx += &cri(
            "stdout",
            "F",
            &format!("10.0.0.{i} - - \"GET / HTTP/1.1\" 200 612"),
        );
    }
    nginx += &cri("stderr", "P", "[warn] client body is buffered to ");
    nginx += &cri(
        "stderr",
        "P",
        "a temporary file /var/cache/nginx/client_temp/",
    );
    nginx += &cri("stderr", "F", "0000000001");
    append(&pod_dir.join("nginx/0.log"), &nginx);

    // CRI, found through kubelet's /var/log/containers link (id in the name).
    let mut sidecar = String::new();
    for i in 0..5 {
        sidecar += &cri(
            "stdout",
            "F",
            &format!("level=info msg=\"synced {i} objects\""),
        );
    }
    append(&pod_dir.join("sidecar/0.log"), &sidecar);
    std::fs::create_dir_all(d.join("containers")).unwrap();
    std::os::unix::fs::symlink(
        pod_dir.join("sidecar/0.log"),
        d.join(format!("containers/web-1_prod_sidecar-{cri_id}.log")),
    )
    .unwrap();

    let want_total = 4.0 + 1.0 + 1.0 + 3.0 + 1.0 + 5.0;
    let in_test = |l: &BTreeMap<String, String>| {
        l["container"] == docker_id
            || l["container"] == cri_id
            || l["container"] == "prod/web-1/nginx"
    };
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        messages(s, in_test).values().map(|(v, _)| v).sum::<f64>() >= want_total
    });
    let got: BTreeMap<_, _> = messages(&s, in_test)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect();
    let key = |src: &str, c: &str, level: &str, p: &str| {
        (src.to_string(), c.to_string(), level.to_string(), hash(p))
    };
    let want = BTreeMap::from([
        (key("docker", &docker_id, "unknown", "GET <*> <*> <*>"), 4.0),
        (
            key(
                "docker",
                &docker_id,
                "error",
                "ERROR upstream <*> timed out after <*>",
            ),
            1.0,
        ),
        (
            key("docker", &docker_id, "unknown", "this is not json"),
            1.0,
        ),
        (
            key("cri", "prod/web-1/nginx", "unknown", "<*> - - <*> <*> <*>"),
            3.0,
        ),
        (
            key(
                "cri",
                "prod/web-1/nginx",
                "warning",
                "[warn] client body is buffered to a temporary file <*>",
            ),
            1.0,
        ),
        (
            key(
                "cri",
                &cri_id,
                "info",
                "level=<*> msg=\"synced <*> objects\"",
            ),
            5.0,
        ),
    ]);
    assert_eq!(got, want);
    assert_eq!(
        value(
            &s,
            MALFORMED,
            &[("source", "docker"), ("container", &docker_id)]
        ),
        Some(1.0),
        "the line that is not JSON"
    );
    assert_eq!(
        value(
            &s,
            MALFORMED,
            &[("source", "cri"), ("container", "prod/web-1/nginx")]
        ),
        Some(0.0)
    );
}
