//! Whether our programs are still attached: reads the kernel's link list.
//! A link can be detached from outside (`bpftool link detach`) or lose its
//! target (an interface deleted); the link object then stays, but its
//! cgroup id or ifindex reads 0.

use std::os::fd::{FromRawFd, OwnedFd};

use aya::programs::links::LinkType;

/// One kernel link of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkState {
    pub link_id: u32,
    pub prog_id: u32,
    pub link_type: Option<LinkType>,
    /// cgroup id (cgroup links) or ifindex (TCX links); `None` for link
    /// types without a target (tracepoints); `Some(0)` once detached.
    pub target: Option<u64>,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// The head of `struct bpf_link_info` plus room for the union we read.
#[repr(C)]
#[derive(Default)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    /// `cgroup.cgroup_id` (u64) or `tcx.ifindex` (u32) at offset 0.
    union_: [u64; 4],
}

#[repr(C)]
struct GetFdAttr {
    link_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn link_target(link_id: u32, link_type: Option<LinkType>) -> Option<u64> {
    let is_cgroup = matches!(link_type, Some(LinkType::Cgroup));
    let is_tcx = matches!(link_type, Some(LinkType::Tcx));
    if !is_cgroup && !is_tcx {
        return None;
    }
    let attr = GetFdAttr {
        link_id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: bpf(2) with a valid, fully initialised attr of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_GET_FD_BY_ID,
            &attr as *const GetFdAttr,
            std::mem::size_of::<GetFdAttr>(),
        )
    };
    if fd < 0 {
        return None; // gone meanwhile
    }
    // SAFETY: the kernel just returned this new descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = RawLinkInfo::default();
    let attr = InfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: std::mem::size_of::<RawLinkInfo>() as u32,
        info: &mut info as *mut RawLinkInfo as u64,
    };
    // SAFETY: as above; `info` outlives the call and is info_len bytes long.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc != 0 {
        return None;
    }
    Some(if is_cgroup {
        info.union_[0]
    } else {
        info.union_[0] & 0xffff_ffff
    })
}

/// Links of the given programs.
pub fn links_of(prog_ids: &[u32]) -> Vec<LinkState> {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| prog_ids.contains(&l.program_id()))
        .map(|l| {
            let link_type = l.link_type().ok();
            LinkState {
                link_id: l.id(),
                prog_id: l.program_id(),
                link_type,
                target: link_target(l.id(), link_type),
            }
        })
        .collect()
}
