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
