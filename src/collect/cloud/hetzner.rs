//! Hetzner Cloud metadata: YAML from `/hetzner/v1/metadata` (no request
//! header needed) and the private networks from
//! `/hetzner/v1/metadata/private-networks`.

use serde::Deserialize;

use super::http::{Client, ProbeError};
use super::{Instance, Provider, ON_DEMAND};

const METADATA: &str = "/hetzner/v1/metadata";
const NETWORKS: &str = "/hetzner/v1/metadata/private-networks";

/// A YAML scalar that may be written as a number (`instance-id: 42`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Text(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Metadata {
    instance_id: Scalar,
    /// Network zone, e.g. `eu-central`.
    #[serde(default)]
    region: Option<String>,
    /// Datacenter, e.g. `fsn1-dc14`.
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    public_ipv4: Option<String>,
    #[serde(default)]
    local_ipv4: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PrivateNetwork {
    ip: String,
}

fn parse_metadata(body: &str) -> Result<Instance, String> {
    let md: Option<Metadata> = serde_saphyr::from_str(body).map_err(|e| e.to_string())?;
    let md = md.ok_or("empty document")?;
    let id = md.instance_id.text();
    if id.trim().is_empty() {
        return Err("instance-id is empty".into());
    }
    let mut i = Instance::new(Provider::Hetzner);
    i.instance_id = id;
    i.region = md.region.unwrap_or_default();
    i.availability_zone = md.availability_zone.unwrap_or_default();
    i.public_ip = md.public_ipv4.unwrap_or_default();
    i.private_ip = md.local_ipv4.unwrap_or_default();
    // Hetzner Cloud has no spot or preemptible servers.
    i.lifecycle = ON_DEMAND.to_string();
    Ok(i)
}

/// The first private network's address, if the server is in one.
fn parse_networks(body: &str) -> Result<Option<String>, String> {
    let nets: Option<Vec<PrivateNetwork>> =
        serde_saphyr::from_str(body).map_err(|e| e.to_string())?;
    Ok(nets.unwrap_or_default().into_iter().next().map(|n| n.ip))
}

pub(super) async fn probe(client: &Client) -> Result<Instance, ProbeError> {
    let (md, nets) = tokio::join!(client.get(METADATA, &[]), client.get(NETWORKS, &[]));
    let mut i = parse_metadata(&md?.ok()?).map_err(|m| ProbeError::invalid(METADATA, m))?;
    if let Some(body) = nets?.optional()? {
        if let Some(ip) = parse_networks(&body).map_err(|m| ProbeError::invalid(NETWORKS, m))? {
            i.private_ip = ip;
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a server's `/hetzner/v1/metadata` (keys as in Hetzner's
    /// cloud-init datasource; vendor data shortened).
    const METADATA_YAML: &str = r##"availability-zone: fsn1-dc14
hostname: some-hostname
instance-id: 12345678
local-ipv4: ''
network-config:
  config:
  - mac_address: 96:00:00:11:22:33
    name: eth0
    subnets:
    - ipv4: true
      type: dhcp
    type: physical
  version: 1
public-ipv4: 192.0.2.10
public-keys: []
region: eu-central
vendor_data: "#cloud-config\nruncmd: []\n"
"##;

    #[test]
    fn metadata_document() {
        let i = parse_metadata(METADATA_YAML).unwrap();
        assert_eq!(i.provider, Provider::Hetzner);
        assert_eq!(i.instance_id, "12345678");
        assert_eq!(i.region, "eu-central");
        assert_eq!(i.availability_zone, "fsn1-dc14");
        assert_eq!(i.public_ip, "192.0.2.10");
        assert_eq!(i.private_ip, "");
        assert_eq!(i.lifecycle, ON_DEMAND);
        assert_eq!(i.account_id, "");
        assert_eq!(i.instance_type, "");
    }

    #[test]
    fn quoted_instance_id_and_missing_keys() {
        let i = parse_metadata("instance-id: \"42\"\n").unwrap();
        assert_eq!(i.instance_id, "42");
        assert_eq!(i.region, "");
        assert!(parse_metadata("hostname: x\n").is_err());
        assert!(parse_metadata("").is_err());
        assert!(parse_metadata("<html><body>404</body></html>").is_err());
    }

    #[test]
    fn private_networks() {
        let body = "- ip: 10.0.0.2\n  alias_ips: [10.0.0.3, 10.0.0.4]\n  interface_num: 1\n  \
                    mac_address: 86:00:00:2a:7d:e0\n  network_id: 1234\n  network_name: nw-test1\n  \
                    network: 10.0.0.0/8\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n\
                    - ip: 192.168.0.2\n  alias_ips: []\n  interface_num: 2\n";
        assert_eq!(parse_networks(body).unwrap().as_deref(), Some("10.0.0.2"));
        assert_eq!(parse_networks("[]").unwrap(), None);
        assert_eq!(parse_networks("").unwrap(), None);
    }
}
