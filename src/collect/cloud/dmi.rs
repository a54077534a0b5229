//! Which cloud the machine says it is, from its own DMI (SMBIOS) identity
//! in `/sys/class/dmi/id`, before any packet is sent: the way cloud-init's
//! ds-identify decides which datasource to try. Only a machine whose
//! firmware names a provider gets its metadata service asked.
//!
//! Rules (each provider documents its SMBIOS strings; ds-identify uses the
//! same ones):
//! - AWS: `sys_vendor`, `bios_vendor` or `board_vendor` is `Amazon EC2`
//!   (Nitro and bare metal), or `product_uuid` and `product_serial` both
//!   start with `ec2` and are equal ignoring case (Xen instances).
//! - GCP: `product_name` is `Google Compute Engine`, or `sys_vendor` /
//!   `bios_vendor` is `Google`, or `product_serial` starts with
//!   `GoogleCloud-`.
//! - Azure: `chassis_asset_tag` is Azure's `7783-7084-3265-9085-8269-3286-77`
//!   (`sys_vendor` `Microsoft Corporation` alone is any Hyper-V guest).
//! - Hetzner: `sys_vendor` is `Hetzner`.

use std::path::Path;

use super::Provider;

/// The Hyper-V chassis asset tag that Azure (and only Azure) sets.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// The DMI fields the rules read, trimmed; empty when absent or unreadable
/// (`product_uuid` and `product_serial` are readable by root only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub sys_vendor: String,
    pub product_name: String,
    pub bios_vendor: String,
    pub board_vendor: String,
    pub chassis_asset_tag: String,
    pub product_uuid: String,
    pub product_serial: String,
}

impl Identity {
    /// Reads the fields under `root` (normally `/sys/class/dmi/id`). A
    /// machine without DMI (Firecracker, many ARM boards) has none.
    pub fn read(root: &Path) -> Self {
        let field = |name: &str| {
            std::fs::read_to_string(root.join(name))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            sys_vendor: field("sys_vendor"),
            product_name: field("product_name"),
            bios_vendor: field("bios_vendor"),
            board_vendor: field("board_vendor"),
            chassis_asset_tag: field("chassis_asset_tag"),
            product_uuid: field("product_uuid"),
            product_serial: field("product_serial"),
        }
    }

    /// The provider these fields name, if any.
    pub fn provider(&self) -> Option<Provider> {
        let amazon = "Amazon EC2";
        if [&self.sys_vendor, &self.bios_vendor, &self.board_vendor]
            .iter()
            .any(|v| v.as_str() == amazon)
            || (starts_with_ec2(&self.product_uuid)
                && starts_with_ec2(&self.product_serial)
                && self.product_uuid.eq_ignore_ascii_case(&self.product_serial))
        {
            return Some(Provider::Aws);
        }
        if self.product_name == "Google Compute Engine"
            || self.sys_vendor == "Google"
            || self.bios_vendor == "Google"
            || self.product_serial.starts_with("GoogleCloud-")
        {
            return Some(Provider::Gcp);
        }
        if self.chassis_asset_tag == AZURE_ASSET_TAG {
            return Some(Provider::Azure);
        }
        if self.sys_vendor == "Hetzner" {
            return Some(Provider::Hetzner);
        }
        None
    }

    /// `sys_vendor/product_name`, for the log line that says why nothing
    /// was asked.
    pub fn summary(&self) -> String {
        if self.sys_vendor.is_empty() && self.product_name.is_empty() {
            return "no DMI identity".to_string();
        }
        format!(
            "sys_vendor={:?} product_name={:?}",
            self.sys_vendor, self.product_name
        )
    }
}

fn starts_with_ec2(s: &str) -> bool {
    s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ec2"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    type Fields<'a> = &'a [(&'a str, &'a str)];

    fn id(fields: Fields) -> Identity {
        let mut i = Identity::default();
        for (k, v) in fields {
            let slot = match *k {
                "sys_vendor" => &mut i.sys_vendor,
                "product_name" => &mut i.product_name,
                "bios_vendor" => &mut i.bios_vendor,
                "board_vendor" => &mut i.board_vendor,
                "chassis_asset_tag" => &mut i.chassis_asset_tag,
                "product_uuid" => &mut i.product_uuid,
                "product_serial" => &mut i.product_serial,
                other => panic!("{other}"),
            };
            *slot = v.to_string();
        }
        i
    }

    #[test]
    fn known_clouds_are_named_by_their_firmware() {
        let cases: &[(Fields, Option<Provider>)] = &[
            (
                &[("sys_vendor", "Amazon EC2"), ("product_name", "m5.large")],
                Some(Provider::Aws),
            ),
            (&[("bios_vendor", "Amazon EC2")], Some(Provider::Aws)),
            (
                &[
                    ("sys_vendor", "Xen"),
                    ("product_uuid", "EC2E1916-9099-7CAF-FD21-012345ABCDEF"),
                    ("product_serial", "ec2e1916-9099-7caf-fd21-012345abcdef"),
                ],
                Some(Provider::Aws),
            ),
            (
                &[
                    ("sys_vendor", "Google"),
                    ("product_name", "Google Compute Engine"),
                ],
                Some(Provider::Gcp),
            ),
            (
                &[("product_serial", "GoogleCloud-1234ABCD")],
                Some(Provider::Gcp),
            ),
            (
                &[
                    ("sys_vendor", "Microsoft Corporation"),
                    ("product_name", "Virtual Machine"),
                    ("chassis_asset_tag", AZURE_ASSET_TAG),
                ],
                Some(Provider::Azure),
            ),
            (
                &[("sys_vendor", "Hetzner"), ("product_name", "vServer")],
                Some(Provider::Hetzner),
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(id(fields).provider(), *want, "{fields:?}");
        }
    }

    #[test]
    fn other_machines_are_no_cloud() {
        for fields in [
            &[][..],
            &[
                ("sys_vendor", "QEMU"),
                ("product_name", "Standard PC (Q35 + ICH9, 2009)"),
            ][..],
            // Hyper-V on premises: Microsoft's vendor string without Azure's tag.
            &[
                ("sys_vendor", "Microsoft Corporation"),
                ("product_name", "Virtual Machine"),
                ("chassis_asset_tag", "0000-0000-0000-0000-0000-0000-00"),
            ][..],
            // Only one of the two Xen fields says ec2.
            &[("product_uuid", "ec2abc"), ("product_serial", "0000")][..],
            &[("sys_vendor", "Amazon")][..],
        ] {
            assert_eq!(id(fields).provider(), None, "{fields:?}");
        }
    }

    #[test]
    fn fields_are_read_trimmed_and_missing_ones_are_empty() {
        let dir = TempDir::new("dmi");
        std::fs::write(dir.0.join("sys_vendor"), "Amazon EC2\n").unwrap();
        std::fs::write(dir.0.join("product_name"), "c6i.xlarge\n").unwrap();
        let i = Identity::read(&dir.0);
        assert_eq!(i.sys_vendor, "Amazon EC2");
        assert_eq!(i.product_name, "c6i.xlarge");
        assert_eq!(i.chassis_asset_tag, "");
        assert_eq!(i.provider(), Some(Provider::Aws));
        assert_eq!(
            Identity::read(Path::new("/nonexistent")),
            Identity::default()
        );
    }
}
