//! `spin`, `diskio`, `alloc`: CPU, synchronous disk I/O and memory load for
//! the node-signal tests (delay accounting, OOM kills).

use std::io;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::cli::{AllocArgs, DiskioArgs, Placement, SpinArgs};
use crate::output::{ms, print_json, Allocated, DiskioDone, Ready, SpinDone};

impl Placement {
    /// Joins the `--cgroup`s and pins to `--cpu`, as asked.
    fn apply(&self) -> Result<()> {
        for dir in &self.cgroups {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, std::process::id().to_string())
                .with_context(|| format!("joining {}", procs.display()))?;
        }
        if let Some(cpu) = self.cpu {
            ensure!(cpu < libc::CPU_SETSIZE as usize, "--cpu {cpu} out of range");
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
            // sched_setaffinity only touch the set we pass.
            let rc = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
            };
            ensure!(
                rc == 0,
                "sched_setaffinity to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

pub fn spin(args: SpinArgs) -> Result<ExitCode> {
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds);
    let mut x: u64 = 1;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    print_json(&SpinDone {
        pid: std::process::id(),
        spun_ms: ms(start.elapsed()),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Block size of `diskio`: a multiple of any logical block size.
const DISKIO_BLOCK: usize = 64 * 1024;

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: non-zero size; checked for null below.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, layout }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

pub fn diskio(args: DiskioArgs) -> Result<ExitCode> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    /// Removes the file however we leave.
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&args.file)
        .with_context(|| format!("opening {} with O_DIRECT", args.file.display()))?;
    let _remove = Remove(&args.file);
    let mut buf = AlignedBuf::new(DISKIO_BLOCK);
    buf.as_mut().fill(0x5a);
    let blocks = args.mib * 1024 * 1024 / DISKIO_BLOCK as u64;
    for i in 0..blocks {
        file.write_all_at(buf.as_mut(), i * DISKIO_BLOCK as u64)
            .context("O_DIRECT write")?;
    }
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut reads = 0u64;
    'outer: loop {
        for i in 0..blocks {
            if Instant::now() >= until {
                break 'outer;
            }
            file.read_exact_at(buf.as_mut(), i * DISKIO_BLOCK as u64)
                .context("O_DIRECT read")?;
            reads += 1;
        }
    }
    print_json(&DiskioDone {
        pid: std::process::id(),
        writes: blocks,
        reads,
    })?;
    thread::sleep(Duration::from_secs_f64(args.hold_seconds.clamp(0.0, 600.0)));
    Ok(ExitCode::SUCCESS)
}

pub fn alloc(args: AllocArgs) -> Result<ExitCode> {
    if let Some(adj) = args.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("writing /proc/self/oom_score_adj")?;
    }
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    const MIB: usize = 1024 * 1024;
    // Non-zero fill: every page is written, so every page is charged.
    let held: Vec<Vec<u8>> = (0..args.mib).map(|_| vec![0xa5u8; MIB]).collect();
    print_json(&Allocated {
        pid: std::process::id(),
        allocated_mib: held.len(),
    })?;
    thread::sleep(Duration::from_secs_f64(args.hold_seconds.clamp(0.0, 600.0)));
    std::hint::black_box(&held);
    Ok(ExitCode::SUCCESS)
}
