//! Fake cloud metadata services for the end-to-end tests. Each answers like
//! its provider's documented API — paths, required request headers (and the
//! error a request without them gets), response headers, JSON/YAML shapes —
//! from instance fields the test chose, and records every request.
//!
//! - AWS IMDSv2: `PUT /latest/api/token` with
//!   `X-aws-ec2-metadata-token-ttl-seconds`, then GETs carrying
//!   `X-aws-ec2-metadata-token`; a GET without a valid token gets 401.
//! - GCP: `/computeMetadata/v1/…` needs `Metadata-Flavor: Google` (403
//!   without) and answers with the same header.
//! - Azure IMDS: `/metadata/instance?api-version=…` needs `Metadata: true`
//!   (400 without, or without `api-version`).
//! - Hetzner: YAML at `/hetzner/v1/metadata` and
//!   `/hetzner/v1/metadata/private-networks`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// A number that differs between runs and tests, to build field values
/// no parser could have hard-coded.
pub fn nonce() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (t ^ (std::process::id() as u64) << 32) + seq * 7919
}

pub struct AwsInstance {
    pub account_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    /// `instance-life-cycle`: `on-demand`, `spot`, …
    pub life_cycle: String,
    pub private_ip: String,
    /// None: no public address (the key answers 404).
    pub public_ip: Option<String>,
}

pub struct GcpInstance {
    pub project_id: String,
    pub numeric_project_id: u64,
    pub instance_id: u64,
    /// Short name, e.g. `e2-medium`; served as `projects/N/machineTypes/…`.
    pub machine_type: String,
    /// Short name, e.g. `us-central1-a`; served as `projects/N/zones/…`.
    pub zone: String,
    /// `SPOT` or `STANDARD`.
    pub provisioning_model: String,
    pub preemptible: bool,
    pub ip: String,
    /// None: no access config (the key answers 404).
    pub external_ip: Option<String>,
    /// false: an impostor that answers without `Metadata-Flavor: Google`.
    pub send_flavor: bool,
}

pub struct AzureInstance {
    pub subscription_id: String,
    pub vm_id: String,
    pub vm_size: String,
    pub location: String,
    /// Logical zone, `"1"`…`"3"`, or empty.
    pub zone: String,
    /// `Regular` or `Spot`.
    pub priority: String,
    /// `Deallocate`/`Delete` for Spot VMs, else empty.
    pub eviction_policy: String,
    pub private_ip: String,
    pub public_ip: String,
}

pub struct HetznerServer {
    pub instance_id: u64,
    pub hostname: String,
    /// Datacenter, e.g. `fsn1-dc14` (`availability-zone`).
    pub datacenter: String,
    /// Network zone, e.g. `eu-central` (`region`).
    pub network_zone: String,
    pub public_ipv4: String,
    /// None: in no private network (`[]`).
    pub private_ip: Option<String>,
}

pub enum Fake {
    Aws(AwsInstance),
    Gcp(GcpInstance),
    Azure(AzureInstance),
    Hetzner(HetznerServer),
}

/// One request the fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub status: u16,
}

struct App {
    fake: Fake,
    /// The IMDSv2 tokens handed out.
    tokens: Mutex<Vec<String>>,
    seen: Mutex<Vec<Seen>>,
}

/// A fake metadata service on 127.0.0.1; stopped on drop.
pub struct FakeCloud {
    pub port: u16,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeCloud {
    pub fn start(fake: Fake) -> FakeCloud {
        Self::start_on(0, fake)
    }

    /// On a given port (0 = any free one).
    pub fn start_on(port: u16, fake: Fake) -> FakeCloud {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake cloud");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Arc::new(App {
            fake,
            tokens: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = app.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let router = axum::Router::new().fallback(handle).with_state(state);
                tokio::select! {
                    r = axum::serve(listener, router) => r.unwrap(),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime closes every connection at once.
        });
        FakeCloud {
            port,
            app,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.app.seen.lock().unwrap().clone()
    }

    /// The IMDSv2 tokens handed out so far.
    pub fn tokens(&self) -> Vec<String> {
        self.app.tokens.lock().unwrap().clone()
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A metadata address that accepts connections and never answers (the
/// kernel completes the handshake; nobody reads): a black hole for probes.
pub struct Silent {
    _listener: TcpListener,
    pub port: u16,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        Silent {
            _listener: listener,
            port,
        }
    }
}

/// An answer: status, extra headers, body.
type Answer = (StatusCode, Vec<(&'static str, String)>, String);

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (status, extra, body) = match &app.fake {
        Fake::Aws(i) => aws(&app, i, &method, uri.path(), &headers),
        Fake::Gcp(i) => gcp(i, &method, uri.path(), &headers),
        Fake::Azure(i) => azure(i, &method, uri.path(), uri.query(), &headers),
        Fake::Hetzner(s) => hetzner(s, &method, uri.path()),
    };
    app.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        status: status.as_u16(),
    });
    let mut resp = Response::builder().status(status);
    for (k, v) in extra {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(body)).unwrap()
}

fn text(body: impl Into<String>) -> Answer {
    (
        StatusCode::OK,
        vec![("content-type", "text/plain".into())],
        body.into(),
    )
}

fn status(code: StatusCode, body: &str) -> Answer {
    (
        code,
        vec![("content-type", "text/plain".into())],
        body.into(),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn aws(app: &App, i: &AwsInstance, method: &Method, path: &str, h: &HeaderMap) -> Answer {
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return status(StatusCode::METHOD_NOT_ALLOWED, "");
        }
        // IMDS: the TTL header is required, 1 to 21600 seconds.
        let ttl = header(h, "x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|t| (1..=21600).contains(t));
        let Some(ttl) = ttl else {
            return status(StatusCode::BAD_REQUEST, "");
        };
        let token = format!("AQAEA{:016x}fake==", nonce());
        app.tokens.lock().unwrap().push(token.clone());
        let (code, mut extra, body) = text(token);
        extra.push(("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string()));
        return (code, extra, body);
    }
    if !path.starts_with("/latest/") {
        return status(StatusCode::NOT_FOUND, "");
    }
    // IMDSv2 required: no (or an unknown) token is 401.
    let token_ok = header(h, "x-aws-ec2-metadata-token")
        .is_some_and(|t| app.tokens.lock().unwrap().iter().any(|k| k == t));
    if !token_ok {
        return status(StatusCode::UNAUTHORIZED, "");
    }
    if method != Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    match path {
        "/latest/dynamic/instance-identity/document" => text(
            serde_json::to_string_pretty(&serde_json::json!({
                "accountId": i.account_id,
                "architecture": "x86_64",
                "availabilityZone": i.availability_zone,
                "billingProducts": null,
                "devpayProductCodes": null,
                "marketplaceProductCodes": null,
                "imageId": "ami-0abcdef1234567890",
                "instanceId": i.instance_id,
                "instanceType": i.instance_type,
                "kernelId": null,
                "pendingTime": "2026-01-05T08:30:00Z",
                "privateIp": i.private_ip,
                "ramdiskId": null,
                "region": i.region,
                "version": "2017-09-30"
            }))
            .unwrap(),
        ),
        "/latest/meta-data/placement/availability-zone-id" => text(&i.availability_zone_id),
        "/latest/meta-data/instance-life-cycle" => text(&i.life_cycle),
        "/latest/meta-data/local-ipv4" => text(&i.private_ip),
        "/latest/meta-data/public-ipv4" => match &i.public_ip {
            Some(ip) => text(ip),
            None => status(StatusCode::NOT_FOUND, ""),
        },
        _ => status(StatusCode::NOT_FOUND, ""),
    }
}

fn gcp(i: &GcpInstance, method: &Method, path: &str, h: &HeaderMap) -> Answer {
    let (code, mut extra, body) = gcp_answer(i, method, path, h);
    if i.send_flavor {
        extra.push(("metadata-flavor", "Google".into()));
        extra.push(("server", "Metadata Server for VM".into()));
    }
    (code, extra, body)
}

fn gcp_answer(i: &GcpInstance, method: &Method, path: &str, h: &HeaderMap) -> Answer {
    let Some(key) = path.strip_prefix("/computeMetadata/v1/") else {
        return status(StatusCode::NOT_FOUND, "");
    };
    if header(h, "metadata-flavor") != Some("Google") {
        return status(
            StatusCode::FORBIDDEN,
            "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.",
        );
    }
    if method != Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    let n = i.numeric_project_id;
    let bool_text = |b: bool| if b { "TRUE" } else { "FALSE" };
    match key {
        "project/project-id" => text(&i.project_id),
        "project/numeric-project-id" => text(n.to_string()),
        "instance/id" => text(i.instance_id.to_string()),
        "instance/machine-type" => text(format!("projects/{n}/machineTypes/{}", i.machine_type)),
        "instance/zone" => text(format!("projects/{n}/zones/{}", i.zone)),
        "instance/scheduling/provisioning-model" => text(&i.provisioning_model),
        "instance/scheduling/preemptible" => text(bool_text(i.preemptible)),
        "instance/scheduling/automatic-restart" => text(bool_text(!i.preemptible)),
        "instance/network-interfaces/0/ip" => text(&i.ip),
        "instance/network-interfaces/0/access-configs/0/external-ip" => match &i.external_ip {
            Some(ip) => text(ip),
            None => status(StatusCode::NOT_FOUND, ""),
        },
        _ => status(StatusCode::NOT_FOUND, ""),
    }
}

fn azure(
    i: &AzureInstance,
    method: &Method,
    path: &str,
    query: Option<&str>,
    h: &HeaderMap,
) -> Answer {
    let json = |code: StatusCode, v: serde_json::Value| {
        (
            code,
            vec![("content-type", "application/json; charset=utf-8".into())],
            v.to_string(),
        )
    };
    if !path.starts_with("/metadata/") {
        return status(StatusCode::NOT_FOUND, "");
    }
    if header(h, "metadata") != Some("true") {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "Bad request. Required metadata header not specified"}),
        );
    }
    let versioned = query
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.starts_with("api-version=") && kv.len() > "api-version=".len());
    if !versioned {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds",
                "newest-versions": ["2023-07-01", "2021-12-13", "2021-11-15"]
            }),
        );
    }
    if method != Method::GET || path != "/metadata/instance" {
        return status(StatusCode::NOT_FOUND, "");
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "compute": {
                "azEnvironment": "AzurePublicCloud",
                "isHostCompatibilityLayerVm": "false",
                "location": i.location,
                "name": "examplevmname",
                "offer": "0001-com-ubuntu-server-jammy",
                "osType": "Linux",
                "placementGroupId": "",
                "platformFaultDomain": "0",
                "platformUpdateDomain": "0",
                "priority": i.priority,
                "evictionPolicy": i.eviction_policy,
                "provider": "Microsoft.Compute",
                "publisher": "Canonical",
                "resourceGroupName": "netagent-test",
                "resourceId": format!(
                    "/subscriptions/{}/resourceGroups/netagent-test/providers/Microsoft.Compute/virtualMachines/examplevmname",
                    i.subscription_id
                ),
                "sku": "22_04-lts-gen2",
                "subscriptionId": i.subscription_id,
                "tags": "",
                "version": "22.04.202401010",
                "vmId": i.vm_id,
                "vmScaleSetName": "",
                "vmSize": i.vm_size,
                "zone": i.zone
            },
            "network": {
                "interface": [{
                    "ipv4": {
                        "ipAddress": [{
                            "privateIpAddress": i.private_ip,
                            "publicIpAddress": i.public_ip
                        }],
                        "subnet": [{"address": "10.1.0.0", "prefix": "24"}]
                    },
                    "ipv6": {"ipAddress": []},
                    "macAddress": "000D3A1B2C3D"
                }]
            }
        }),
    )
}

fn hetzner(s: &HetznerServer, method: &Method, path: &str) -> Answer {
    if method != Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    match path {
        "/hetzner/v1/metadata" => text(format!(
            "availability-zone: {dc}\n\
             hostname: {host}\n\
             instance-id: {id}\n\
             local-ipv4: ''\n\
             network-config:\n  \
               config:\n  \
               - mac_address: 96:00:01:02:03:04\n    \
                 name: eth0\n    \
                 subnets:\n    \
                 - ipv4: true\n      \
                   type: dhcp\n    \
                 type: physical\n  \
               version: 1\n\
             public-ipv4: {ip}\n\
             public-keys: []\n\
             region: {zone}\n\
             vendor_data: \"#cloud-config\\nruncmd: []\\n\"\n",
            dc = s.datacenter,
            host = s.hostname,
            id = s.instance_id,
            ip = s.public_ipv4,
            zone = s.network_zone,
        )),
        "/hetzner/v1/metadata/private-networks" => match &s.private_ip {
            Some(ip) => text(format!(
                "- ip: {ip}\n  \
                   alias_ips: []\n  \
                   interface_num: 1\n  \
                   mac_address: 86:00:00:2a:7d:e0\n  \
                   network_id: 1234\n  \
                   network_name: nw-test1\n  \
                   network: 10.0.0.0/8\n  \
                   subnet: 10.0.0.0/24\n  \
                   gateway: 10.0.0.1\n"
            )),
            None => text("[]\n"),
        },
        "/hetzner/v1/metadata/hostname" => text(&s.hostname),
        "/hetzner/v1/metadata/instance-id" => text(s.instance_id.to_string()),
        _ => status(StatusCode::NOT_FOUND, ""),
    }
}

/// A directory laid out like `/sys/class/dmi/id` with the given fields,
/// for `cloud.dmi_root`; removed on drop.
pub struct FakeDmi(super::TempDir);

impl FakeDmi {
    pub fn new(fields: &[(&str, &str)]) -> FakeDmi {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = super::TempDir::new(&format!("dmi{n}"));
        for (name, value) in fields {
            // The kernel ends every field with a newline.
            std::fs::write(dir.0.join(name), format!("{value}\n")).unwrap();
        }
        FakeDmi(dir)
    }

    /// What an EC2 Nitro instance's firmware says.
    pub fn aws() -> FakeDmi {
        Self::new(&[
            ("sys_vendor", "Amazon EC2"),
            ("product_name", "m6i.large"),
            ("bios_vendor", "Amazon EC2"),
            ("board_vendor", "Amazon EC2"),
            ("chassis_asset_tag", "Amazon EC2"),
        ])
    }

    pub fn gcp() -> FakeDmi {
        Self::new(&[
            ("sys_vendor", "Google"),
            ("product_name", "Google Compute Engine"),
            ("bios_vendor", "Google"),
            ("board_vendor", "Google"),
            ("chassis_asset_tag", ""),
        ])
    }

    pub fn azure() -> FakeDmi {
        Self::new(&[
            ("sys_vendor", "Microsoft Corporation"),
            ("product_name", "Virtual Machine"),
            ("bios_vendor", "Microsoft Corporation"),
            ("board_vendor", "Microsoft Corporation"),
            ("chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77"),
        ])
    }

    pub fn hetzner() -> FakeDmi {
        Self::new(&[
            ("sys_vendor", "Hetzner"),
            ("product_name", "vServer"),
            ("bios_vendor", "Hetzner"),
            ("board_vendor", ""),
            ("chassis_asset_tag", ""),
        ])
    }

    /// A plain QEMU/KVM guest: no cloud.
    pub fn qemu() -> FakeDmi {
        Self::new(&[
            ("sys_vendor", "QEMU"),
            ("product_name", "Standard PC (Q35 + ICH9, 2009)"),
            ("bios_vendor", "SeaBIOS"),
            ("board_vendor", ""),
            ("chassis_asset_tag", ""),
        ])
    }

    pub fn path(&self) -> String {
        self.0 .0.display().to_string()
    }
}
