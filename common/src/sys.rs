//! Facts about this machine and its users that restic records: host name, user and group
//! names (looked up once each, as the same ids recur on every node); and the few process-wide
//! system calls with no safe wrapper (time zone, allocator, standard output, pipe size).
//! It holds all of the library's `unsafe`.

use std::collections::HashMap;

use nix::unistd::{Gid, Group, Uid, User};

/// The host name, as restic records it in snapshots.
pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The effective user id and group id of this process.
pub fn ids() -> (u32, u32) {
    (Uid::effective().as_raw(), Gid::effective().as_raw())
}

/// Whether a process with this id exists on this host (a process of another user counts).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // No signal checks existence and permission without sending anything.
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    };
    // A zombie (dead, not yet reaped: common in containers whose init reaps nothing) is gone.
    exists && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| zombie(&st))
}

/// Whether a `/proc/PID/stat` line is a zombie's: the state follows the command in parentheses.
fn zombie(stat: &str) -> bool {
    stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'))
}

/// Resolves user and group ids to names, caching every answer (misses included).
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// The name of user `uid`, or "" when it has none.
    pub fn user(&mut self, uid: u32) -> String {
        self.users.entry(uid).or_insert_with(|| lookup_user(uid)).clone()
    }

    /// The name of group `gid`, or "" when it has none.
    pub fn group(&mut self, gid: u32) -> String {
        self.groups.entry(gid).or_insert_with(|| lookup_group(gid)).clone()
    }
}

// nix grows the lookup buffer until the entry fits (a group of thousands of members from
// LDAP does not fit a fixed one), so a name is never lost to ERANGE.
fn lookup_user(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name).unwrap_or_default()
}

fn lookup_group(gid: u32) -> String {
    Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name).unwrap_or_default()
}

/// The offset east of UTC, in seconds, of this machine's local zone (`TZ`, `/etc/localtime`)
/// at the instant `secs`; 0 where the C library cannot say. This is where sluice reads the
/// time-zone database, so that a node's times carry the offset restic would record.
pub fn utc_offset(secs: i64) -> i32 {
    // time_t is 32 bits on some targets; an instant beyond it keeps offset 0.
    let t = secs as libc::time_t;
    if t as i64 != secs {
        return 0;
    }
    // SAFETY: a zeroed tm is a valid value (integers and a null zone-name pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    i32::try_from(tm.tm_gmtoff).unwrap_or(0)
}

/// The name of the user running this process (restic's snapshot `username`).
pub fn username() -> String {
    let name = lookup_user(ids().0);
    if name.is_empty() {
        std::env::var("USER").unwrap_or_default()
    } else {
        name
    }
}

/// Makes the allocator hand large buffers (1 MiB and up) straight back to the system when
/// they are freed. glibc otherwise raises its threshold after the first such free and keeps
/// freed buffers in the arena of the thread that made them, one arena per worker thread, so
/// a stage with many readers would hold far more than the reads in flight.
pub fn return_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Starts writing a range of a file's dirty pages to disk without waiting for it
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): a later `fsync` or `syncfs` then finds
/// them written or on their way. Not a durability guarantee by itself.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for
    // the duration of the call (borrowed from `file`).
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `fd` has something to read (data, or its end) within `wait`. A stage asks this
/// before it blocks on its input, to flush what it wrote first when the input pauses.
pub fn input_within(fd: i32, wait: std::time::Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd of ours; poll only looks.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    // An error (EINTR) says nothing either way; the read will tell.
    n != 0
}

/// Standard output as a `File` that is never closed: fd 1 stays open for the life of the
/// process, and `ManuallyDrop` keeps a dropped writer from closing it.
pub fn stdout_file() -> std::mem::ManuallyDrop<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 1 exists for the whole process and is never closed through this `File`.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) })
}

/// Standard input as a `File` that is never closed, as [`stdout_file`] is for output.
pub fn stdin_file() -> std::mem::ManuallyDrop<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 exists for the whole process and is never closed through this `File`.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) })
}

/// Keeps a closed stdout (`tool >&-`) failing. Before `main`, Rust's runtime opens /dev/null
/// on a closed standard descriptor, so every write to it would succeed and a tool would exit
/// 0 for output that reached no one (coreutils say "Bad file descriptor" and fail). This runs
/// earlier, from `.init_array`: on a closed fd 1 it opens /dev/null *read-only* there, which
/// the runtime leaves alone and on which every write fails with `EBADF`, as on a closed fd.
extern "C" fn keep_closed_stdout_failing() {
    // SAFETY: fcntl F_GETFD only asks whether the descriptor is open.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } != -1 {
        return;
    }
    // SAFETY: a NUL-terminated path; the descriptors are this process's own and fd 1 is
    // free (fd 0 may be free too: then the new one is moved to 1).
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if fd >= 0 && fd != 1 {
            libc::dup2(fd, 1);
            libc::close(fd);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static KEEP_CLOSED_STDOUT_FAILING: extern "C" fn() = keep_closed_stdout_failing;

/// Whether stdout is a pipe (this stage feeds another one).
pub fn stdout_is_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    stdout_file().metadata().is_ok_and(|m| m.file_type().is_fifo())
}

/// Makes a pipe buffer bigger; pipes default to 64 KiB, which halves throughput at our sizes.
pub fn enlarge_pipe(fd: i32) {
    // F_SETPIPE_SZ fails harmlessly on anything that is not a pipe.
    // SAFETY: fcntl with an integer argument touches no memory of ours.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Raises this process's limit on open descriptors to the most it may have (the hard limit,
/// as Go programs such as restic do at start), and grows its descriptor table to hold
/// `reserve` of them now. Growing the table later, in a process with threads, waits for an
/// RCU grace period per doubling: 15-18 ms each on this project's test machine, in the
/// middle of a restore. So call it first thing, before any thread starts.
pub fn reserve_open_files(reserve: u32) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    let stdin = std::io::stdin();
    // The lowest free descriptor at or above reserve - 1: the table grows to hold it, and
    // keeps that size once it is closed again.
    drop(rustix::io::fcntl_dupfd_cloexec(&stdin, reserve.saturating_sub(1) as i32));
}

/// The limit on open descriptors in force; `None` when it cannot be read.
pub fn open_files_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root() {
        let mut n = Names::default();
        assert_eq!(n.user(0), "root");
        assert_eq!(n.group(0), "root");
        assert_eq!(n.user(4_000_000_000), "");
        assert!(!hostname().is_empty());
    }

    /// The offset agrees with date(1)'s for the same instant, in January and in July (where
    /// the zone has summer time, the two differ).
    #[test]
    fn utc_offset_agrees_with_date() {
        for secs in [1_577_934_245i64, 1_593_561_600] {
            let out =
                std::process::Command::new("date").arg("-d").arg(format!("@{secs}")).arg("+%z").output();
            let z = String::from_utf8(out.unwrap().stdout).unwrap();
            let z = z.trim();
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hh: i32 = z[1..3].parse().unwrap();
            let mm: i32 = z[3..5].parse().unwrap();
            assert_eq!(utc_offset(secs), sign * (hh * 3600 + mm * 60), "date says {z}");
        }
    }
}
