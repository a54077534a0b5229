//! Reads a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+):
//! a few system calls for the whole map instead of two per entry, which is
//! what keeps a scrape of 100k+ series short. aya 0.14 has no batch API.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Entries asked for per call; a hash bucket larger than this is an ENOSPC,
/// retried with a larger buffer.
const CHUNK: u32 = 4096;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Kernel-internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of an aya map iterator (the fallback where batch reads are
/// missing): skips entries deleted during the walk; other errors abort.
pub fn walk<K, V>(
    it: impl Iterator<Item = Result<(K, V), aya::maps::MapError>>,
) -> Result<Vec<(K, V)>, aya::maps::MapError> {
    let mut out = Vec::new();
    for entry in it {
        match entry {
            Ok(kv) => out.push(kv),
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every (key, value) of a hash map with plain (not per-CPU) values.
/// `Err` with `ErrorKind::Unsupported` when the kernel has no batch ops.
pub fn lookup_all<K: aya::Pod, V: aya::Pod>(map: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    lookup(map, usize::MAX)
}

/// The first `n` values of an array map (indexes 0..n), in order.
pub fn lookup_first<V: aya::Pod>(map: BorrowedFd<'_>, n: usize) -> io::Result<Vec<V>> {
    let mut out: Vec<(u32, V)> = lookup(map, n)?;
    out.truncate(n);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// Walks a map in batches until it ends or `limit` entries are read. The
/// batch position is 32 bits for both map kinds we read: a bucket index
/// for hash maps, the last index for arrays.
fn lookup<K: aya::Pod, V: aya::Pod>(map: BorrowedFd<'_>, limit: usize) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut chunk = (CHUNK as usize).min(limit.max(1));
    let mut pos_in: u32 = 0;
    let mut pos_out: u32 = 0;
    let mut first = true;
    loop {
        let mut keys: Vec<K> = Vec::with_capacity(chunk);
        let mut values: Vec<V> = Vec::with_capacity(chunk);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &pos_in as *const u32 as u64
            },
            out_batch: &mut pos_out as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: attr points at buffers of `count` keys and values, sized
        // by the map's own K and V (checked against the map by aya at
        // creation); the kernel writes at most `count` of each.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = attr.count as usize;
        match err.as_ref().and_then(|e| e.raw_os_error()) {
            None | Some(libc::ENOENT) => {
                // SAFETY: the kernel filled the first `n` entries.
                unsafe {
                    keys.set_len(n);
                    values.set_len(n);
                }
                out.extend(keys.into_iter().zip(values));
                if err.is_some() || out.len() >= limit {
                    return Ok(out); // ENOENT: the walk is complete
                }
                pos_in = pos_out;
                first = false;
            }
            Some(libc::ENOSPC) if chunk < 1 << 20 => chunk *= 4,
            Some(libc::EINVAL) | Some(ENOTSUPP) | Some(libc::EOPNOTSUPP) => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, err.unwrap()))
            }
            Some(_) => return Err(err.unwrap()),
        }
    }
}
