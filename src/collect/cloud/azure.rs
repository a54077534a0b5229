//! Azure Instance Metadata Service: one JSON document from
//! `/metadata/instance?api-version=…` with the request header
//! `Metadata: true` (IMDS answers 400 without it).

use serde::Deserialize;

use super::http::{Client, ProbeError};
use super::{Instance, Provider, ON_DEMAND, SPOT};

/// A version every IMDS in service supports and that has `priority` and
/// `evictionPolicy`.
const PATH: &str = "/metadata/instance?api-version=2021-02-01";
const HEADER: (&str, &str) = ("Metadata", "true");

#[derive(Debug, Deserialize)]
struct Document {
    compute: Compute,
    #[serde(default)]
    network: Network,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Compute {
    vm_id: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    vm_size: String,
    /// Logical zone number (`"1"`), empty for VMs outside zones.
    #[serde(default)]
    zone: String,
    #[serde(default)]
    subscription_id: String,
    /// `Regular`, `Spot` (or the older `Low`); may be empty.
    #[serde(default)]
    priority: String,
    /// `Deallocate` or `Delete` for Spot VMs, empty otherwise.
    #[serde(default)]
    eviction_policy: String,
}

#[derive(Debug, Default, Deserialize)]
struct Network {
    #[serde(default)]
    interface: Vec<Interface>,
}

#[derive(Debug, Deserialize)]
struct Interface {
    ipv4: Ipv4,
}

#[derive(Debug, Deserialize)]
struct Ipv4 {
    #[serde(default, rename = "ipAddress")]
    ip_address: Vec<IpAddress>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpAddress {
    #[serde(default)]
    private_ip_address: String,
    /// Only filled for basic-SKU public addresses.
    #[serde(default)]
    public_ip_address: String,
}

fn parse(body: &str) -> Result<Instance, String> {
    let doc: Document = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let c = doc.compute;
    if c.vm_id.trim().is_empty() {
        return Err("compute.vmId is empty".into());
    }
    let mut i = Instance::new(Provider::Azure);
    i.account_id = c.subscription_id;
    i.instance_id = c.vm_id;
    i.instance_type = c.vm_size;
    // `<region>-<zone>` as Kubernetes labels Azure zones: a bare "1" means
    // nothing across regions.
    if !c.zone.trim().is_empty() {
        i.availability_zone = format!("{}-{}", c.location, c.zone.trim());
    }
    i.region = c.location;
    let spot = c.priority.eq_ignore_ascii_case("Spot")
        || c.priority.eq_ignore_ascii_case("Low")
        || !c.eviction_policy.trim().is_empty();
    i.lifecycle = if spot { SPOT } else { ON_DEMAND }.to_string();
    if let Some(ip) = doc
        .network
        .interface
        .first()
        .and_then(|nic| nic.ipv4.ip_address.first())
    {
        i.private_ip = ip.private_ip_address.clone();
        i.public_ip = ip.public_ip_address.clone();
    }
    Ok(i)
}

pub(super) async fn probe(client: &Client) -> Result<Instance, ProbeError> {
    let body = client.get(PATH, &[HEADER]).await?.ok()?;
    parse(&body).map_err(|m| ProbeError::invalid(PATH, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the "instance" example of the Azure IMDS documentation
    /// (values shortened; fields we do not read left out or kept as-is).
    const DOC: &str = r#"{
  "compute": {
    "azEnvironment": "AzurePublicCloud",
    "location": "westeurope",
    "name": "examplevmname",
    "osType": "Linux",
    "priority": "Spot",
    "evictionPolicy": "Deallocate",
    "resourceGroupName": "macikgo-test-may-23",
    "resourceId": "/subscriptions/xxxxxxxx-xxxxx-xxxx-xxxx-xxxxxxxxxxx/resourceGroups/macikgo-test-may-23/providers/Microsoft.Compute/virtualMachines/examplevmname",
    "subscriptionId": "xxxxxxxx-xxxxx-xxxx-xxxx-xxxxxxxxxxx",
    "tags": "baz:bash;foo:bar",
    "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
    "vmScaleSetName": "crpteste9vflji9",
    "vmSize": "Standard_A3",
    "zone": "2"
  },
  "network": {
    "interface": [{
      "ipv4": {
        "ipAddress": [{
          "privateIpAddress": "10.144.133.132",
          "publicIpAddress": ""
        }],
        "subnet": [{ "address": "10.144.133.128", "prefix": "26" }]
      },
      "ipv6": { "ipAddress": [] },
      "macAddress": "0011AAFFBB22"
    }]
  }
}"#;

    #[test]
    fn instance_document() {
        let i = parse(DOC).unwrap();
        assert_eq!(i.provider, Provider::Azure);
        assert_eq!(i.account_id, "xxxxxxxx-xxxxx-xxxx-xxxx-xxxxxxxxxxx");
        assert_eq!(i.instance_id, "02aab8a4-74ef-476e-8182-f6d2ba4166a6");
        assert_eq!(i.instance_type, "Standard_A3");
        assert_eq!(i.region, "westeurope");
        assert_eq!(i.availability_zone, "westeurope-2");
        assert_eq!(i.lifecycle, SPOT);
        assert_eq!(i.private_ip, "10.144.133.132");
        assert_eq!(i.public_ip, "");
    }

    #[test]
    fn regular_vm_outside_zones_without_network() {
        let i = parse(
            r#"{"compute":{"vmId":"v","location":"eastus","vmSize":"Standard_D2s_v3",
                "zone":"","priority":"Regular","evictionPolicy":"","subscriptionId":"s"}}"#,
        )
        .unwrap();
        assert_eq!(i.availability_zone, "");
        assert_eq!(i.lifecycle, ON_DEMAND);
        assert_eq!(i.private_ip, "");
    }

    #[test]
    fn errors_are_not_instances() {
        // What IMDS answers without the Metadata header (with HTTP 400).
        assert!(
            parse(r#"{"error":"Bad request. Required metadata header not specified"}"#).is_err()
        );
        assert!(parse(r#"{"compute":{"vmId":""}}"#).is_err());
    }
}
