//! Owner names in the tree: a group whose entry is larger than any fixed lookup buffer (an
//! LDAP group with thousands of members) must keep its name, or the tree bytes differ from
//! restic's. Runs as root (CI does): it adds the group to /etc/group for the test's length.

mod support;

use std::fs;
use std::os::unix::fs::chown;

use support::backup::{init_repo, Backup};
use support::{is_root, tempdir, walk_records, Restic};

/// Removes the test's line from /etc/group however the test ends.
struct GroupLine(String);

impl Drop for GroupLine {
    fn drop(&mut self) {
        if let Ok(all) = fs::read_to_string("/etc/group") {
            let kept: String =
                all.lines().filter(|l| !l.starts_with(&self.0)).map(|l| format!("{l}\n")).collect();
            let _ = fs::write("/etc/group", kept);
        }
    }
}

#[test]
fn a_group_with_many_members_keeps_its_name() {
    assert!(is_root(), "this test adds a group to /etc/group and needs root (CI runs as root)");
    let gid = 47_113;
    let name = "sluicebiggroup";
    // 4,000 members of 12 bytes each: about 52 KiB, far past the old 16 KiB buffer.
    let members: Vec<String> = (0..4000).map(|i| format!("member{i:05}")).collect();
    let line = format!("{name}:x:{gid}:{}\n", members.join(","));
    let _cleanup = GroupLine(format!("{name}:"));
    let mut all = fs::read_to_string("/etc/group").unwrap();
    if !all.ends_with('\n') {
        all.push('\n');
    }
    all.push_str(&line);
    fs::write("/etc/group", all).unwrap();

    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = src.join("owned");
    fs::write(&f, b"x").unwrap();
    chown(&f, None, Some(gid)).unwrap();

    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    Backup::of(&[&src]).run(&r);
    let recs = walk_records(&r, "latest", &[]);
    let node = recs
        .iter()
        .find(|v| v["path"].as_str().is_some_and(|p| p.ends_with("/owned")))
        .unwrap_or_else(|| panic!("no record for the file: {recs:?}"));
    assert_eq!(node["node"]["gid"], gid, "{node}");
    assert_eq!(node["node"]["group"], name, "{node}");

    // restic names it the same, so both make the same tree bytes.
    let id = r.backup(&[&src], &[]);
    let ls = String::from_utf8(r.run(&["ls", "--json", &id]).stdout).unwrap();
    assert!(ls.contains(&format!("\"gid\":{gid}")), "{ls}");
}
