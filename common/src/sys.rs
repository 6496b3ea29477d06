//! Facts about this machine and its users that restic records: host name, user and group
//! names (looked up once each, as the same ids recur on every node).

use std::collections::HashMap;
use std::ffi::CStr;

/// The host name, as restic records it in snapshots.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The effective user id and group id of this process.
pub fn ids() -> (u32, u32) {
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether a process with this id exists on this host (a process of another user counts).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks existence and permission without sending anything.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
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

fn lookup_user(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned()
}

fn lookup_group(gid: u32) -> String {
    let mut buf = vec![0u8; 16384];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned()
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
}
