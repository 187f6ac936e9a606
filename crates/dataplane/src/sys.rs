//! The few raw system calls the dataplane needs beyond aya.

use std::io;
use std::path::Path;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Waits for an RCU grace period: every BPF program invocation that started
/// before this call has finished when it returns. `MEMBARRIER_CMD_GLOBAL`
/// calls `synchronize_rcu()` in the kernel (tc programs run inside RCU
/// read-side critical sections).
pub fn synchronize_rcu() -> io::Result<()> {
    // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and touches no
    // user memory.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// True if `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let st = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Mounts a bpf filesystem at `dir` (created if missing) unless `dir` already
/// is on one. Returns true if it mounted.
pub fn ensure_bpffs(dir: &Path) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    if is_bpffs(dir)? {
        return Ok(false);
    }
    nix::mount::mount(Some("bpf"), dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(io::Error::from)?;
    Ok(true)
}

/// Interface index by name, in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)
}

// enum bpf_cmd values (linux/bpf.h, stable ABI).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `bpf_attr` is a union; 128 bytes covers every variant used here.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

fn sys_bpf(cmd: libc::c_long, attr: &mut BpfAttr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` points to 128 initialised bytes that live for the call;
    // the kernel reads at most `size` bytes and requires the rest to be zero.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BpfAttr, std::mem::size_of::<BpfAttr>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// Opens a pinned BPF object (`BPF_OBJ_GET`).
pub fn bpf_obj_get(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = BpfAttr([0; 128]);
    attr.0[..8].copy_from_slice(&(c.as_ptr() as u64).to_ne_bytes());
    let fd = sys_bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that we now own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Detaches a BPF link now (`BPF_LINK_DETACH`), even if it stays pinned or
/// referenced. Unpinning alone detaches only once the last reference is
/// released, which bpffs does after an RCU grace period.
pub fn bpf_link_detach(link: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut attr = BpfAttr([0; 128]);
    attr.0[..4].copy_from_slice(&(link.as_raw_fd() as u32).to_ne_bytes());
    sys_bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}
