//! What aya's `Btf` finds by name but does not expose, read from the
//! running kernel's raw BTF (one little-endian vmlinux blob; anything
//! unreadable is `None`, never a panic): how many parameters a function
//! takes, the type of a tracepoint's argument, the values of an enum (reset
//! and drop reasons) and the members of a struct (the kfree_skb record).
//! An fexit program reads the return value in the slot right after the
//! parameters, so it is only loaded where the function has the
//! parameter count it was written for (a kernel that adds a parameter
//! would otherwise hand it a parameter as the return value, and the
//! verifier cannot tell when both are integers).

/// BTF kinds (include/uapi/linux/btf.h) whose records have extra data.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

const MAGIC: u16 = 0xeb9f;

const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// One type record: its kind, name, `size_or_type` and `vlen`; for a
/// function prototype, the type ids of its parameters; for an enum, its
/// values (name offset, value); for a struct, its members' name offsets.
struct Record {
    kind: u32,
    name_off: u32,
    type_id: u32,
    params: Vec<u32>,
    values: Vec<(u32, i64)>,
    members: Vec<u32>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Every type record of a little-endian BTF blob (id 1 first), and the
/// string section. None when the blob is not BTF we can read.
fn records(btf: &[u8]) -> Option<(Vec<Record>, &[u8])> {
    if btf.get(0..2)? != MAGIC.to_le_bytes() {
        return None;
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
    let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < types.len() {
        let name_off = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let type_id = u32_at(types, at + 8)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        at += 12;
        let mut params = Vec::new();
        let mut values = Vec::new();
        let mut members = Vec::new();
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT => {
                // struct btf_member { name_off, type, offset }
                for i in 0..vlen {
                    members.push(u32_at(types, at + 12 * i)?);
                }
                12 * vlen
            }
            KIND_UNION | KIND_DATASEC => 12 * vlen,
            KIND_ENUM => {
                // struct btf_enum { name_off, val }: signed when kflag is set.
                let signed = info & (1 << 31) != 0;
                for i in 0..vlen {
                    let name = u32_at(types, at + 8 * i)?;
                    let raw = u32_at(types, at + 8 * i + 4)?;
                    let val = if signed {
                        i64::from(raw as i32)
                    } else {
                        i64::from(raw)
                    };
                    values.push((name, val));
                }
                8 * vlen
            }
            KIND_ENUM64 => {
                // struct btf_enum64 { name_off, val_lo32, val_hi32 }
                for i in 0..vlen {
                    let name = u32_at(types, at + 12 * i)?;
                    let lo = u64::from(u32_at(types, at + 12 * i + 4)?);
                    let hi = u64::from(u32_at(types, at + 12 * i + 8)?);
                    values.push((name, ((hi << 32) | lo) as i64));
                }
                12 * vlen
            }
            KIND_FUNC_PROTO => {
                for i in 0..vlen {
                    // struct btf_param { name_off, type }: type 0 = varargs.
                    let ty = u32_at(types, at + 8 * i + 4)?;
                    if ty != 0 {
                        params.push(ty);
                    }
                }
                8 * vlen
            }
            _ => 0,
        };
        at += extra;
        out.push(Record {
            kind,
            name_off,
            type_id,
            params,
            values,
            members,
        });
    }
    Some((out, strings))
}

fn name_at(strings: &[u8], off: u32) -> &[u8] {
    let s = strings.get(off as usize..).unwrap_or_default();
    &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
}

/// How many parameters kernel function `func` takes, from the kernel's
/// BTF (as bytes); None when it is not there or the BTF is unreadable.
pub fn param_count(btf: &[u8], func: &str) -> Option<usize> {
    let (recs, strings) = records(btf)?;
    let f = recs
        .iter()
        .find(|r| r.kind == KIND_FUNC && name_at(strings, r.name_off) == func.as_bytes())?;
    // Type ids start at 1 (0 is void).
    let proto = recs.get((f.type_id as usize).checked_sub(1)?)?;
    (proto.kind == KIND_FUNC_PROTO).then_some(proto.params.len())
}

/// The record of type `id` (ids start at 1; 0 is void).
fn by_id(recs: &[Record], id: u32) -> Option<&Record> {
    recs.get((id as usize).checked_sub(1)?)
}

/// The type `id` names once typedefs and qualifiers are looked through.
fn resolve(recs: &[Record], mut id: u32) -> Option<&Record> {
    for _ in 0..32 {
        let r = by_id(recs, id)?;
        match r.kind {
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                id = r.type_id
            }
            _ => return Some(r),
        }
    }
    None
}

/// The type of argument `index` (0 = the first the tracepoint passes) of
/// BTF-typed tracepoint `event`, as `enum NAME`, `struct NAME *` and so
/// on — enough to tell prototypes apart. From the typedef
/// `btf_trace_<event>`, a pointer to a prototype whose first parameter is
/// the program's context (`void *`). None when the tracepoint or the
/// argument is not there.
pub fn tracepoint_arg(btf: &[u8], event: &str, index: usize) -> Option<String> {
    let (recs, strings) = records(btf)?;
    let name = format!("btf_trace_{event}");
    let td = recs
        .iter()
        .find(|r| r.kind == KIND_TYPEDEF && name_at(strings, r.name_off) == name.as_bytes())?;
    let ptr = by_id(&recs, td.type_id).filter(|r| r.kind == KIND_PTR)?;
    let proto = by_id(&recs, ptr.type_id).filter(|r| r.kind == KIND_FUNC_PROTO)?;
    let arg = resolve(&recs, *proto.params.get(index + 1)?)?;
    let named = |what: &str, r: &Record| {
        format!(
            "{what} {}",
            String::from_utf8_lossy(name_at(strings, r.name_off))
        )
    };
    Some(match arg.kind {
        KIND_ENUM | KIND_ENUM64 => named("enum", arg),
        KIND_STRUCT => named("struct", arg),
        KIND_UNION => named("union", arg),
        KIND_PTR => match resolve(&recs, arg.type_id) {
            Some(r) if r.kind == KIND_STRUCT => format!("{} *", named("struct", r)),
            _ => "pointer".to_string(),
        },
        _ => String::from_utf8_lossy(name_at(strings, arg.name_off)).into_owned(),
    })
}

/// The values of enum `name` (`enum NAME`, or a 64-bit one), each with its
/// name, in the kernel's order. None when the kernel has no such enum.
pub fn enum_values(btf: &[u8], name: &str) -> Option<Vec<(String, i64)>> {
    let (recs, strings) = records(btf)?;
    let e = recs.iter().find(|r| {
        (r.kind == KIND_ENUM || r.kind == KIND_ENUM64)
            && name_at(strings, r.name_off) == name.as_bytes()
    })?;
    Some(
        e.values
            .iter()
            .map(|&(off, v)| {
                (
                    String::from_utf8_lossy(name_at(strings, off)).into_owned(),
                    v,
                )
            })
            .collect(),
    )
}

/// The member names of `struct name`, in order (nested anonymous members
/// appear as ""); None when there is no such struct.
pub fn struct_members(btf: &[u8], name: &str) -> Option<Vec<String>> {
    let (recs, strings) = records(btf)?;
    let s = recs
        .iter()
        .find(|r| r.kind == KIND_STRUCT && name_at(strings, r.name_off) == name.as_bytes())?;
    Some(
        s.members
            .iter()
            .map(|&off| String::from_utf8_lossy(name_at(strings, off)).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `int` (id 1), a prototype `int (int, int)` (id 2)
    /// and the function `two` (id 3), and a struct before them to skip.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0two\0s\0a\0".to_vec();
        let mut t: Vec<u8> = Vec::new();
        let mut rec = |name: u32, kind: u32, vlen: u32, ty: u32, extra: &[u32]| {
            for w in [name, (kind << 24) | vlen, ty].iter().chain(extra) {
                t.extend(w.to_le_bytes());
            }
        };
        rec(1, KIND_INT, 0, 4, &[32]); // id 1: int
        rec(9, KIND_STRUCT, 1, 4, &[11, 1, 0]); // id 2: struct s { int a; }
        rec(0, KIND_FUNC_PROTO, 2, 1, &[0, 1, 0, 1]); // id 3: int (int, int)
        rec(5, KIND_FUNC, 0, 3, &[]); // id 4: two
        assemble(t, &strings)
    }

    /// A BTF blob with an enum and a tracepoint `ev` passing (int, enum e):
    /// the typedef the kernel declares for each BTF-typed tracepoint.
    fn tracepoint_blob() -> Vec<u8> {
        let strings = b"\0int\0e\0E_A\0E_B\0btf_trace_ev\0".to_vec();
        let mut t: Vec<u8> = Vec::new();
        let mut rec = |name: u32, kind: u32, vlen: u32, ty: u32, extra: &[u32]| {
            for w in [name, (kind << 24) | vlen, ty].iter().chain(extra) {
                t.extend(w.to_le_bytes());
            }
        };
        rec(1, KIND_INT, 0, 4, &[32]); // id 1: int
        rec(5, KIND_ENUM, 2, 4, &[7, 0, 11, 7]); // id 2: enum e { E_A = 0, E_B = 7 }
        rec(0, KIND_PTR, 0, 0, &[]); // id 3: void *
        rec(0, KIND_FUNC_PROTO, 3, 0, &[0, 3, 0, 1, 0, 2]); // id 4: void (void *, int, enum e)
        rec(0, KIND_PTR, 0, 4, &[]); // id 5: pointer to it
        rec(15, KIND_TYPEDEF, 0, 5, &[]); // id 6: btf_trace_ev
        assemble(t, &strings)
    }

    /// A BTF blob: the header, then the type records, then the strings.
    fn assemble(types: Vec<u8>, strings: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(w.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    #[test]
    fn tracepoint_arguments_and_enum_values() {
        let b = tracepoint_blob();
        assert_eq!(tracepoint_arg(&b, "ev", 0).as_deref(), Some("int"));
        assert_eq!(tracepoint_arg(&b, "ev", 1).as_deref(), Some("enum e"));
        assert_eq!(tracepoint_arg(&b, "ev", 2), None, "no third argument");
        assert_eq!(tracepoint_arg(&b, "other", 0), None);
        assert_eq!(
            enum_values(&b, "e"),
            Some(vec![("E_A".to_string(), 0), ("E_B".to_string(), 7)])
        );
        assert_eq!(enum_values(&b, "int"), None, "not an enum");
    }

    #[test]
    fn counts_parameters_by_function_name() {
        let b = blob();
        assert_eq!(param_count(&b, "two"), Some(2));
        assert_eq!(param_count(&b, "int"), None, "a type, not a function");
        assert_eq!(param_count(&b, "missing"), None);
        assert_eq!(param_count(b"not btf", "two"), None);
    }

    /// On the running kernel (where it has BTF): the functions the fexit
    /// programs attach to.
    #[test]
    fn reads_the_running_kernels_prototypes() {
        let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        assert_eq!(param_count(&raw, "inet_sendmsg"), Some(3));
        assert_eq!(param_count(&raw, "inet_recvmsg"), Some(4));
        assert_eq!(
            tracepoint_arg(&raw, "tcp_send_reset", 0).as_deref(),
            Some("struct sock *")
        );
        // Linux 6.10+ passes the reset's reason too, and names its values.
        if let Some(reason) = tracepoint_arg(&raw, "tcp_send_reset", 2) {
            assert_eq!(reason, "enum sk_rst_reason");
            let values = enum_values(&raw, "sk_rst_reason").expect("the enum");
            assert!(values.contains(&("SK_RST_REASON_NOT_SPECIFIED".into(), 0)));
        }
    }

    /// A BTF blob with `int` (id 1), `struct rec { int a; int b; }` (id 2),
    /// `enum e { E_ZERO = 0, E_BIG = 0xffff0000 }` (unsigned, id 3),
    /// `enum s { S_NEG = -1 }` (signed, id 4), an enum64 `w { W = 1 << 40 }`.
    fn typed_blob() -> Vec<u8> {
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
        assemble(t, &strings)
    }

    #[test]
    fn reads_enums_and_structs_by_name() {
        let b = typed_blob();
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
