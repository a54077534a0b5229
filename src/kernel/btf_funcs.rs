//! Kernel function prototypes from raw BTF: how many parameters a function
//! takes. aya's `Btf` finds a function by name but does not expose its
//! prototype. An fexit program reads the return value in the slot right
//! after the parameters, so it is only loaded where the function has the
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

/// One type record: its kind, name, `size_or_type` and `vlen`; for a
/// function prototype, the type ids of its parameters.
struct Record {
    kind: u32,
    name_off: u32,
    type_id: u32,
    params: Vec<u32>,
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
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM => 8 * vlen,
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
    }
}
