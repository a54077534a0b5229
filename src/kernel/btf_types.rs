//! Named types of the running kernel from raw BTF: the values of an enum
//! and the members of a struct, which aya's `Btf` does not expose. The
//! drops collector names `enum skb_drop_reason` values with them, and
//! `netagent probe` tells from a tracepoint's record which arguments the
//! kernel passes. Reads one little-endian BTF blob (vmlinux, not split
//! module BTF); anything it cannot read is `None`, never a panic.

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

const MAGIC: u16 = 0xeb9f;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn name_at(strings: &[u8], off: u32) -> Option<&str> {
    let s = strings.get(off as usize..)?;
    std::str::from_utf8(&s[..s.iter().position(|&c| c == 0)?]).ok()
}

/// One named type record: its kind, whether its values are signed (enums),
/// and where its members start in the type section.
struct Record<'a> {
    kind: u32,
    name: &'a str,
    signed: bool,
    vlen: usize,
    members: usize,
}

/// Walks the type section; `visit` returns Some to stop with that value.
fn find<'a, T>(
    btf: &'a [u8],
    mut visit: impl FnMut(&Record<'a>, &'a [u8], &'a [u8]) -> Option<T>,
) -> Option<T> {
    if btf.get(0..2)? != MAGIC.to_le_bytes() {
        return None;
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
    let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
    let mut at = 0;
    while at < types.len() {
        let name_off = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let members = at + 12;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            _ => 0,
        };
        let rec = Record {
            kind,
            name: name_at(strings, name_off).unwrap_or(""),
            signed: info & (1 << 31) != 0,
            vlen,
            members,
        };
        if let Some(v) = visit(&rec, types, strings) {
            return Some(v);
        }
        at = members + extra;
    }
    None
}

/// The enumerators of `enum name` with their values (an enum64's too);
/// None when the kernel has no such enum or the BTF is unreadable.
pub fn enum_values(btf: &[u8], name: &str) -> Option<Vec<(String, i64)>> {
    find(btf, |r, types, strings| {
        if r.name != name || (r.kind != KIND_ENUM && r.kind != KIND_ENUM64) {
            return None;
        }
        let mut out = Vec::with_capacity(r.vlen);
        for i in 0..r.vlen {
            let (entry, value) = if r.kind == KIND_ENUM {
                // struct btf_enum { name_off; s32/u32 val }
                let at = r.members + 8 * i;
                let raw = u32_at(types, at + 4)?;
                let v = if r.signed {
                    i64::from(raw as i32)
                } else {
                    i64::from(raw)
                };
                (at, v)
            } else {
                // struct btf_enum64 { name_off; val_lo32; val_hi32 }
                let at = r.members + 12 * i;
                let v = u64::from(u32_at(types, at + 4)?) | u64::from(u32_at(types, at + 8)?) << 32;
                (at, v as i64)
            };
            out.push((name_at(strings, u32_at(types, entry)?)?.to_string(), value));
        }
        Some(out)
    })
}

/// The member names of `struct name`, in order (nested anonymous members
/// appear as ""); None when there is no such struct.
pub fn struct_members(btf: &[u8], name: &str) -> Option<Vec<String>> {
    find(btf, |r, types, strings| {
        if r.name != name || r.kind != KIND_STRUCT {
            return None;
        }
        (0..r.vlen)
            .map(|i| {
                let off = u32_at(types, r.members + 12 * i)?;
                Some(name_at(strings, off)?.to_string())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `int` (id 1), `struct rec { int a; int b; }` (id 2),
    /// `enum e { E_ZERO = 0, E_BIG = 0xffff0000 }` (unsigned, id 3),
    /// `enum s { S_NEG = -1 }` (signed, id 4), an enum64 `w { W = 1 << 40 }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0rec\0a\0b\0e\0E_ZERO\0E_BIG\0s\0S_NEG\0w\0W\0".to_vec();
        let at = |s: &str| {
            let needle = format!("\0{s}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut t: Vec<u8> = Vec::new();
        let mut rec = |name: u32, info: u32, ty: u32, extra: &[u32]| {
            for w in [name, info, ty].iter().chain(extra) {
                t.extend(w.to_le_bytes());
            }
        };
        rec(at("int"), KIND_INT << 24, 4, &[32]);
        rec(
            at("rec"),
            KIND_STRUCT << 24 | 2,
            8,
            &[at("a"), 1, 0, at("b"), 1, 32],
        );
        rec(
            at("e"),
            KIND_ENUM << 24 | 2,
            4,
            &[at("E_ZERO"), 0, at("E_BIG"), 0xffff_0000],
        );
        rec(
            at("s"),
            1 << 31 | KIND_ENUM << 24 | 1,
            4,
            &[at("S_NEG"), u32::MAX],
        );
        rec(at("w"), KIND_ENUM64 << 24 | 1, 8, &[at("W"), 0, 1 << 8]);
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(w.to_le_bytes());
        }
        b.extend(t);
        b.extend(strings);
        b
    }

    #[test]
    fn reads_enums_and_structs_by_name() {
        let b = blob();
        assert_eq!(
            enum_values(&b, "e").unwrap(),
            [
                ("E_ZERO".to_string(), 0),
                ("E_BIG".to_string(), 0xffff_0000)
            ]
        );
        assert_eq!(enum_values(&b, "s").unwrap(), [("S_NEG".to_string(), -1)]);
        assert_eq!(enum_values(&b, "w").unwrap(), [("W".to_string(), 1 << 40)]);
        assert_eq!(struct_members(&b, "rec").unwrap(), ["a", "b"]);
        assert_eq!(enum_values(&b, "rec"), None, "a struct, not an enum");
        assert_eq!(struct_members(&b, "missing"), None);
        assert_eq!(enum_values(b"not btf", "e"), None);
        assert_eq!(enum_values(&b[..30], "e"), None, "truncated");
    }

    /// On the running kernel (where it has BTF): the drop reasons and the
    /// kfree_skb record, as the drops feature reads them.
    #[test]
    fn reads_the_running_kernels_drop_reasons() {
        let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let Some(reasons) = enum_values(&raw, "skb_drop_reason") else {
            return; // before 5.17
        };
        assert!(reasons
            .iter()
            .any(|(n, _)| n == "SKB_DROP_REASON_NO_SOCKET"));
        let fields = struct_members(&raw, "trace_event_raw_kfree_skb").unwrap();
        assert!(fields.iter().any(|f| f == "reason"), "{fields:?}");
    }
}
