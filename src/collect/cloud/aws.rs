//! AWS EC2 instance metadata, IMDSv2: a session token from
//! `PUT /latest/api/token`, then GETs that carry it (instances that
//! require IMDSv2 answer 401 to anything else).

use serde::Deserialize;

use super::http::{Client, ProbeError};
use super::{Instance, Provider};

const TOKEN: &str = "/latest/api/token";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
/// Seconds the token lives: one round needs it for well under that.
const TOKEN_TTL: &str = "60";

const DOCUMENT: &str = "/latest/dynamic/instance-identity/document";
const AZ_ID: &str = "/latest/meta-data/placement/availability-zone-id";
const LIFE_CYCLE: &str = "/latest/meta-data/instance-life-cycle";
const LOCAL_IPV4: &str = "/latest/meta-data/local-ipv4";
const PUBLIC_IPV4: &str = "/latest/meta-data/public-ipv4";

/// The fields we use of the instance identity document (JSON).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    account_id: String,
    instance_id: String,
    #[serde(default)]
    instance_type: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    availability_zone: String,
    #[serde(default)]
    private_ip: Option<String>,
}

/// The instance from its identity document.
fn parse_document(body: &str) -> Result<Instance, String> {
    let doc: IdentityDocument = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if doc.instance_id.trim().is_empty() {
        return Err("instanceId is empty".into());
    }
    let mut i = Instance::new(Provider::Aws);
    i.account_id = doc.account_id;
    i.instance_id = doc.instance_id;
    i.instance_type = doc.instance_type;
    i.region = doc.region;
    i.availability_zone = doc.availability_zone;
    i.private_ip = doc.private_ip.unwrap_or_default();
    Ok(i)
}

pub(super) async fn probe(client: &Client) -> Result<Instance, ProbeError> {
    let token = client
        .send(reqwest::Method::PUT, TOKEN, &[(TTL_HEADER, TOKEN_TTL)])
        .await?
        .ok()?;
    let token = token.trim();
    if token.is_empty() || token.contains(['\r', '\n']) {
        return Err(ProbeError::invalid(TOKEN, "not a session token"));
    }
    let auth = [(TOKEN_HEADER, token)];
    let doc = client.get(DOCUMENT, &auth).await?.ok()?;
    let mut i = parse_document(&doc).map_err(|m| ProbeError::invalid(DOCUMENT, m))?;
    // Keys an instance may lack (no public address, older regions) are 404.
    let (az_id, life_cycle, local, public) = tokio::join!(
        client.get(AZ_ID, &auth),
        client.get(LIFE_CYCLE, &auth),
        client.get(LOCAL_IPV4, &auth),
        client.get(PUBLIC_IPV4, &auth),
    );
    i.availability_zone_id = az_id?.optional()?.unwrap_or_default();
    i.lifecycle = life_cycle?.optional()?.unwrap_or_default();
    if let Some(ip) = local?.optional()? {
        i.private_ip = ip;
    }
    i.public_ip = public?.optional()?.unwrap_or_default();
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the EC2 user guide ("Instance identity documents").
    const DOC: &str = r#"{
    "accountId" : "0123456789",
    "architecture" : "x86_64",
    "availabilityZone" : "us-west-2b",
    "billingProducts" : null,
    "devpayProductCodes" : null,
    "marketplaceProductCodes" : [ "1abc2defghijklm3nopqrs4tu" ],
    "imageId" : "ami-5fb8c835",
    "instanceId" : "i-1234567890abcdef0",
    "instanceType" : "t2.micro",
    "kernelId" : null,
    "pendingTime" : "2016-11-19T16:32:11Z",
    "privateIp" : "10.158.112.84",
    "ramdiskId" : null,
    "region" : "us-west-2",
    "version" : "2017-09-30"
}"#;

    #[test]
    fn identity_document() {
        let i = parse_document(DOC).unwrap();
        assert_eq!(i.provider, Provider::Aws);
        assert_eq!(i.account_id, "0123456789");
        assert_eq!(i.instance_id, "i-1234567890abcdef0");
        assert_eq!(i.instance_type, "t2.micro");
        assert_eq!(i.region, "us-west-2");
        assert_eq!(i.availability_zone, "us-west-2b");
        assert_eq!(i.private_ip, "10.158.112.84");
        assert_eq!(i.public_ip, "");
    }

    #[test]
    fn not_an_identity_document() {
        assert!(parse_document("<html>403</html>").is_err());
        assert!(parse_document(r#"{"accountId":"1"}"#).is_err());
        assert!(parse_document(r#"{"accountId":"1","instanceId":" "}"#).is_err());
    }
}
