//! Series maps: an index (hash map, key -> slot) and a counter array the
//! kernel programs add to by slot (see `flows` in bpf/netagent/maps.h). Both
//! are read with batch lookups; of the array only up to the highest slot in
//! use (the kernel takes free slots in order; freed ones queue behind the
//! never used ones).

use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Array, HashMap, Map, MapData, MapError, Queue};

use super::abi::FlowKey;
use super::batch;
use super::error::KernelError;

/// The generation bits of a slot reference (`NA_SLOT_BITS` in
/// bpf/netagent/series.h: the slot takes the 20 bits below them).
const GEN_MASK: u32 = (1 << 12) - 1;

/// One series map: its index, its counters, the generation of each slot
/// and the queue of free slots.
pub struct SeriesMap<V: aya::Pod> {
    index: HashMap<MapData, FlowKey, u32>,
    index_fd: OwnedFd,
    counters: Array<MapData, V>,
    counters_fd: OwnedFd,
    gens: Array<MapData, u32>,
    free: Queue<MapData, u32>,
}

impl<V: aya::Pod> SeriesMap<V> {
    /// Takes the index map, the counter array, the generations and the
    /// (already filled) free-slot queue.
    pub fn new(index: Map, counters: Map, gens: Map, free: Map) -> Result<Self, KernelError> {
        let object = |e: &dyn std::fmt::Display| KernelError::Object(e.to_string());
        Ok(Self {
            index_fd: second_fd(&index)?,
            counters_fd: second_fd(&counters)?,
            index: HashMap::try_from(index).map_err(|e| object(&e))?,
            counters: Array::try_from(counters).map_err(|e| object(&e))?,
            gens: Array::try_from(gens).map_err(|e| object(&e))?,
            free: Queue::try_from(free).map_err(|e| object(&e))?,
        })
    }

    /// Frees the slot of series `key`: returns it, or None when the key
    /// has none. The generation goes first, so a socket that cached the
    /// slot looks its series up again (and gets a new slot) from now on;
    /// the counters are zeroed before the slot is offered again. Not atomic
    /// against the programs: an event that already passed the generation
    /// check may still add to the zeroed counters, and a program between
    /// its index lookup and its generation read may cache the new
    /// generation. Only quiet series of gone owners are freed, so such an
    /// event is rare; its count lands in the slot's next series.
    pub fn free(&mut self, key: &FlowKey) -> Result<Option<u32>, MapError> {
        let slot = match self.index.get(key, 0) {
            Ok(slot) => slot,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let gen = self.gens.get(&slot, 0)?;
        self.gens.set(slot, (gen + 1) & GEN_MASK, 0)?;
        self.index.remove(key)?;
        // SAFETY: counter values are plain integers (aya::Pod): all zeroes is valid.
        let zero: V = unsafe { std::mem::zeroed() };
        self.counters.set(slot, zero, 0)?;
        self.free.push(slot, 0)?;
        Ok(Some(slot))
    }

    /// Every series with its counters.
    pub fn read_all(&self) -> Result<Vec<(FlowKey, V)>, MapError> {
        let slots = self.slots()?;
        let used = slots
            .iter()
            .map(|&(_, s)| s as usize + 1)
            .max()
            .unwrap_or(0);
        let values = match batch::lookup_first::<V>(self.counters_fd.as_fd(), used) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("batch read of series counters failed ({e}); reading one by one");
                let mut out = Vec::with_capacity(used);
                for slot in 0..used as u32 {
                    out.push(self.counters.get(&slot, 0)?);
                }
                out
            }
        };
        Ok(slots
            .into_iter()
            .filter_map(|(k, slot)| values.get(slot as usize).map(|v| (k, *v)))
            .collect())
    }

    fn slots(&self) -> Result<Vec<(FlowKey, u32)>, MapError> {
        batch::lookup_all(self.index_fd.as_fd()).or_else(|e| {
            tracing::debug!("batch read of a series index failed ({e}); walking the map");
            batch::walk(self.index.iter())
        })
    }
}

/// A second descriptor of a hash or array map, for batch reads (aya keeps
/// the first inside its typed map).
fn second_fd(map: &Map) -> Result<OwnedFd, KernelError> {
    match map {
        Map::HashMap(data) | Map::Array(data) => data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| KernelError::Object(format!("dup map fd: {e}"))),
        _ => Err(KernelError::Object(
            "series map: expected a hash map or an array".into(),
        )),
    }
}

/// Gives the kernel its free slots: 0..len, in order (freed slots are
/// pushed behind them, [`SeriesMap::free`]).
pub fn fill_slots(queue: &mut Map, len: u32) -> Result<(), KernelError> {
    let mut q: Queue<&mut MapData, u32> =
        Queue::try_from(queue).map_err(|e| KernelError::Object(e.to_string()))?;
    for slot in 0..len {
        q.push(slot, 0)
            .map_err(|e| KernelError::Object(format!("filling series slots: {e}")))?;
    }
    Ok(())
}
