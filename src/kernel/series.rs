//! Series maps: an index (hash map, key -> slot) and a counter array the
//! kernel programs add to by slot (see `flows` in bpf/netagent.bpf.c). The
//! array is mmap()ed, so reading it costs no system call per series; the
//! index is read with batch lookups.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;

use aya::maps::{HashMap, Map, MapData, MapError, Queue};

use super::abi::FlowKey;
use super::batch;
use super::loader::KernelError;

/// A BPF array map (`BPF_F_MMAPABLE`) mapped read-only into our memory.
pub struct MappedArray<V> {
    ptr: NonNull<V>,
    len: usize,
    bytes: usize,
    _fd: OwnedFd,
    _v: PhantomData<V>,
}

// SAFETY: the mapping is read-only shared memory owned by this value; reads
// are plain loads of `Pod` values.
unsafe impl<V: Send> Send for MappedArray<V> {}
unsafe impl<V: Sync> Sync for MappedArray<V> {}

impl<V: aya::Pod> MappedArray<V> {
    /// Maps `len` values of the array behind `fd`.
    pub fn new(fd: OwnedFd, len: usize) -> io::Result<Self> {
        // The kernel lays the values out back to back, each rounded up to 8
        // bytes; our mirrors are multiples of 8 already.
        if !std::mem::size_of::<V>().is_multiple_of(8) || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "array value size must be a multiple of 8",
            ));
        }
        let page = page_size();
        let bytes = (len * std::mem::size_of::<V>()).div_ceil(page) * page;
        // SAFETY: a fresh shared read-only mapping of a map fd; the kernel
        // checks the length against the map.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(p.cast()).expect("mmap returned a non-null address"),
            len,
            bytes,
            _fd: fd,
            _v: PhantomData,
        })
    }

    /// The value at `slot` as the kernel has it now (each 8-byte counter is
    /// read whole; counters of one value may be from moments apart, as with
    /// any lookup of a map being updated).
    pub fn get(&self, slot: u32) -> Option<V> {
        let slot = slot as usize;
        if slot >= self.len {
            return None;
        }
        // SAFETY: in bounds of the mapping; V is Pod, so any bytes are valid.
        Some(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(slot)) })
    }
}

impl<V> Drop for MappedArray<V> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// One series map: index, counters, and the length of both.
pub struct SeriesMap<V> {
    index: HashMap<MapData, FlowKey, u32>,
    index_fd: OwnedFd,
    counters: MappedArray<V>,
}

impl<V: aya::Pod> SeriesMap<V> {
    /// Takes the index map and the counter array (both sized `len`).
    pub fn new(index: Map, counters: Map, len: u32) -> Result<Self, KernelError> {
        let object = |e: &dyn std::fmt::Display| KernelError::Object(e.to_string());
        let index_fd = match &index {
            Map::HashMap(data) => data.fd().as_fd().try_clone_to_owned(),
            _ => {
                return Err(KernelError::Object(
                    "series index: expected a hash map".into(),
                ))
            }
        }
        .map_err(|e| object(&e))?;
        let counters_fd = match &counters {
            Map::Array(data) => data.fd().as_fd().try_clone_to_owned(),
            _ => {
                return Err(KernelError::Object(
                    "series counters: expected an array".into(),
                ))
            }
        }
        .map_err(|e| object(&e))?;
        Ok(Self {
            index: HashMap::try_from(index).map_err(|e| object(&e))?,
            index_fd,
            counters: MappedArray::new(counters_fd, len as usize)
                .map_err(|e| KernelError::Object(format!("mmap of series counters: {e}")))?,
        })
    }

    /// Every series with its counters.
    pub fn read_all(&self) -> Result<Vec<(FlowKey, V)>, MapError> {
        let slots: Vec<(FlowKey, u32)> = match batch::lookup_all(self.index_fd.as_fd()) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("batch read of a series index failed ({e}); walking the map");
                let mut out = Vec::new();
                for entry in self.index.iter() {
                    match entry {
                        Ok(kv) => out.push(kv),
                        // Entries are never deleted; kept for safety.
                        Err(MapError::KeyNotFound) => continue,
                        Err(e) => return Err(e),
                    }
                }
                out
            }
        };
        Ok(slots
            .into_iter()
            .filter_map(|(k, slot)| self.counters.get(slot).map(|v| (k, v)))
            .collect())
    }
}

/// Gives the kernel its free slots: 0..len, in order. The map must stay
/// open until the programs using it are loaded.
pub fn fill_slots(queue: &mut Map, len: u32) -> Result<(), KernelError> {
    let mut q: Queue<&mut MapData, u32> =
        Queue::try_from(queue).map_err(|e| KernelError::Object(e.to_string()))?;
    for slot in 0..len {
        q.push(slot, 0)
            .map_err(|e| KernelError::Object(format!("filling series slots: {e}")))?;
    }
    Ok(())
}
