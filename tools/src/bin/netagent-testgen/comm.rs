//! The process name: netagent attributes traffic by kernel `comm`, so every
//! thread sets it before any network I/O.

use std::ffi::{CStr, CString};
use std::io;
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};

pub static COMM: OnceLock<CString> = OnceLock::new();

/// Set the calling thread's kernel comm.
pub fn set_comm(name: &CStr) -> io::Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 16 bytes
    // including NUL) from the pointer, which is valid for the call's duration.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Spawn a thread that sets its comm before running `f`.
///
/// Threads inherit the comm at creation, but set it explicitly anyway: traffic
/// under the wrong name would silently invalidate a test.
pub fn spawn_named<F, T>(stack_size: Option<usize>, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let comm: &'static CStr = COMM.get().expect("comm set in main");
    let mut builder = thread::Builder::new();
    if let Some(size) = stack_size {
        builder = builder.stack_size(size);
    }
    builder.spawn(move || {
        if let Err(e) = set_comm(comm) {
            eprintln!("netagent-testgen: prctl(PR_SET_NAME) failed in thread: {e}");
            std::process::exit(2);
        }
        f()
    })
}
