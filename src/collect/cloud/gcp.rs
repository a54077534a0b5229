//! Google Compute Engine metadata server: `/computeMetadata/v1/…` with the
//! request header `Metadata-Flavor: Google`. The real server sends the same
//! header back; an answer without it is not the metadata server (a proxy,
//! another provider's service) and is not trusted.

use reqwest::header::HeaderMap;

use super::http::{Client, ProbeError, Reply};
use super::{Instance, Provider, ON_DEMAND, PREEMPTIBLE, SPOT};

const PREFIX: &str = "/computeMetadata/v1/";
const FLAVOR: (&str, &str) = ("Metadata-Flavor", "Google");

/// Whether the answer came from the metadata server.
fn is_metadata_server(headers: &HeaderMap) -> bool {
    headers
        .get(FLAVOR.0)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == FLAVOR.1)
}

/// `projects/123/zones/us-central1-a` -> `us-central1-a` (also for
/// machine types).
fn last_segment(s: &str) -> &str {
    s.trim().rsplit('/').next().unwrap_or_default()
}

/// `us-central1-a` -> `us-central1`.
fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map(|(r, _)| r).unwrap_or_default()
}

/// Spot VMs report `provisioning-model` `SPOT`; the older preemptible VMs
/// `preemptible` `TRUE`.
fn lifecycle(provisioning_model: Option<&str>, preemptible: Option<&str>) -> &'static str {
    if provisioning_model.is_some_and(|m| m.trim().eq_ignore_ascii_case("SPOT")) {
        SPOT
    } else if preemptible.is_some_and(|p| p.trim().eq_ignore_ascii_case("TRUE")) {
        PREEMPTIBLE
    } else {
        ON_DEMAND
    }
}

/// The leaf keys read, as the metadata server returns them.
#[derive(Debug, Default)]
struct Keys {
    project_id: String,
    instance_id: String,
    machine_type: Option<String>,
    zone: Option<String>,
    provisioning_model: Option<String>,
    preemptible: Option<String>,
    ip: Option<String>,
    external_ip: Option<String>,
}

fn assemble(k: Keys) -> Instance {
    let mut i = Instance::new(Provider::Gcp);
    i.account_id = k.project_id;
    i.instance_id = k.instance_id;
    i.instance_type = last_segment(k.machine_type.as_deref().unwrap_or_default()).to_string();
    let zone = last_segment(k.zone.as_deref().unwrap_or_default());
    i.region = region_of(zone).to_string();
    i.availability_zone = zone.to_string();
    i.lifecycle = lifecycle(k.provisioning_model.as_deref(), k.preemptible.as_deref()).to_string();
    i.private_ip = k.ip.unwrap_or_default();
    i.public_ip = k.external_ip.unwrap_or_default();
    i
}

/// A checked answer: from the metadata server, or an error.
fn checked(reply: Result<Reply, ProbeError>) -> Result<Reply, ProbeError> {
    let reply = reply?;
    if !is_metadata_server(&reply.headers) {
        return Err(ProbeError::invalid(
            &reply.path,
            "answer without `Metadata-Flavor: Google`: not a GCE metadata server",
        ));
    }
    Ok(reply)
}

pub(super) async fn probe(client: &Client) -> Result<Instance, ProbeError> {
    let paths = [
        "project/project-id",
        "instance/id",
        "instance/machine-type",
        "instance/zone",
        "instance/scheduling/provisioning-model",
        "instance/scheduling/preemptible",
        "instance/network-interfaces/0/ip",
        "instance/network-interfaces/0/access-configs/0/external-ip",
    ]
    .map(|p| format!("{PREFIX}{p}"));
    let get = |i: usize| client.get(&paths[i], &[FLAVOR]);
    let (project, id, machine, zone, model, preemptible, ip, external) = tokio::join!(
        get(0),
        get(1),
        get(2),
        get(3),
        get(4),
        get(5),
        get(6),
        get(7)
    );
    let keys = Keys {
        project_id: checked(project)?.ok()?.trim().to_string(),
        instance_id: checked(id)?.ok()?.trim().to_string(),
        machine_type: checked(machine)?.optional()?,
        zone: checked(zone)?.optional()?,
        provisioning_model: checked(model)?.optional()?,
        preemptible: checked(preemptible)?.optional()?,
        ip: checked(ip)?.optional()?,
        external_ip: checked(external)?.optional()?,
    };
    if keys.project_id.is_empty() || keys.instance_id.is_empty() {
        return Err(ProbeError::invalid(
            &paths[1],
            "empty project or instance id",
        ));
    }
    Ok(assemble(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_machine_type_and_region() {
        assert_eq!(
            last_segment("projects/123456789012/zones/us-central1-a"),
            "us-central1-a"
        );
        assert_eq!(
            last_segment("projects/123456789012/machineTypes/e2-medium\n"),
            "e2-medium"
        );
        assert_eq!(region_of("europe-west4-b"), "europe-west4");
        assert_eq!(region_of("nohyphen"), "");
    }

    #[test]
    fn lifecycles() {
        assert_eq!(lifecycle(Some("SPOT"), Some("TRUE")), SPOT);
        assert_eq!(lifecycle(Some("STANDARD"), Some("TRUE")), PREEMPTIBLE);
        assert_eq!(lifecycle(None, Some("TRUE")), PREEMPTIBLE);
        assert_eq!(lifecycle(Some("STANDARD"), Some("FALSE")), ON_DEMAND);
        assert_eq!(lifecycle(None, None), ON_DEMAND);
    }

    #[test]
    fn assembled_from_leaf_keys() {
        let i = assemble(Keys {
            project_id: "my-project".into(),
            instance_id: "4520031799277581759".into(),
            machine_type: Some("projects/123456789012/machineTypes/n2-standard-4".into()),
            zone: Some("projects/123456789012/zones/europe-west1-b".into()),
            provisioning_model: Some("STANDARD".into()),
            preemptible: Some("FALSE".into()),
            ip: Some("10.132.0.2".into()),
            external_ip: None,
        });
        assert_eq!(i.provider, Provider::Gcp);
        assert_eq!(i.account_id, "my-project");
        assert_eq!(i.instance_id, "4520031799277581759");
        assert_eq!(i.instance_type, "n2-standard-4");
        assert_eq!(i.availability_zone, "europe-west1-b");
        assert_eq!(i.region, "europe-west1");
        assert_eq!(i.availability_zone_id, "");
        assert_eq!(i.lifecycle, ON_DEMAND);
        assert_eq!(i.private_ip, "10.132.0.2");
        assert_eq!(i.public_ip, "");
    }

    #[test]
    fn flavor_header_is_required() {
        let mut h = HeaderMap::new();
        assert!(!is_metadata_server(&h));
        h.insert("metadata-flavor", "Other".parse().unwrap());
        assert!(!is_metadata_server(&h));
        h.insert("metadata-flavor", "Google".parse().unwrap());
        assert!(is_metadata_server(&h));
    }
}
