//! `unpack --dry-run` says exactly what the real restore then does. For every `--overwrite`
//! mode, with and without `--delete`, a target holding the edge-case tree and what a user
//! leaves behind (the same file, a changed one, one of the same size and time, a newer and an
//! older one, read-only files, a file where the snapshot has a directory and the reverse, a
//! symlink where it has a directory, hard-link pairs whole, broken and changed, files the
//! snapshot lacks) gets a dry run, then the real run; the dry run's `action` records and its
//! refusals are held against the real run's records, refusals and the target before and after.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use support::*;

/// What is at a path: kind, content's SHA-256 (a link's target's), inode.
type Entry = (&'static str, String, u64);

/// Every entry below `root` (directories too), by relative path as bytes.
fn state(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).into_iter().map(|e| e.unwrap()) {
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let (kind, content) = match () {
            _ if ft.is_file() => ("file", fs::read(e.path()).unwrap()),
            _ if ft.is_symlink() => {
                ("symlink", fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec())
            }
            _ if ft.is_dir() => ("dir", Vec::new()),
            _ => ("special", Vec::new()),
        };
        let rel = e.path().strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        out.insert(
            rel,
            (kind, hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&content)[..6]), md.ino()),
        );
    }
    out
}

/// A record's path as bytes (`path_raw` when the name is not UTF-8).
fn path_of(r: &Value) -> Vec<u8> {
    match r["path_raw"].as_str() {
        Some(raw) => base64::engine::general_purpose::STANDARD.decode(raw).unwrap(),
        None => r["path"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// The paths unpack's stderr lines name (`unpack: TARGET/PATH: why`); the last line, the
/// count, names none.
fn refused(stderr: &str, target: &Path) -> BTreeSet<Vec<u8>> {
    let prefix = format!("unpack: {}/", target.display());
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            Some(rest.split_once(": ").unwrap_or_else(|| panic!("no reason: {l}")).0.as_bytes().to_vec())
        })
        .collect()
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// `a` is `b` or below it.
fn within(a: &[u8], b: &[u8]) -> bool {
    a == b || (a.starts_with(b) && a.get(b.len()) == Some(&b'/'))
}

fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("{p:?}: {e}"));
}

fn sh(cmd: &str, dir: &Path) {
    let st = Command::new("sh").args(["-c", cmd]).current_dir(dir).status().unwrap();
    assert!(st.success(), "{cmd}: {st}");
}

/// The snapshot: the edge-case tree under `tree/`, and the paths the target will hold
/// something else at.
fn fixture() -> Fixture {
    Fixture::new(
        |src| {
            fs::create_dir(src.join("tree")).unwrap();
            make_tree(&src.join("tree"), 61, &TreeOpts::default());
            for d in ["f", "dirwhere/sub", "linkwhere", "hl1", "hl2", "hl3"] {
                fs::create_dir_all(src.join(d)).unwrap();
            }
            for (i, n) in [
                "same",
                "changed",
                "samesize",
                "newer",
                "older",
                "readonly-same",
                "readonly-changed",
                "missing",
            ]
            .iter()
            .enumerate()
            {
                write(&src.join("f").join(n), &random_bytes(900 + i as u64, 5000 + i * 100));
            }
            write(&src.join("f/partial"), &random_bytes(950, 3 << 20));
            write(&src.join("dirwhere/x"), b"x\n");
            write(&src.join("dirwhere/sub/y"), b"y\n");
            write(&src.join("filewhere"), b"a file in the snapshot\n");
            write(&src.join("linkwhere/x"), b"x\n");
            for (i, d) in ["hl1", "hl2", "hl3"].iter().enumerate() {
                write(&src.join(d).join("a"), &random_bytes(960 + i as u64, 7000));
                fs::hard_link(src.join(d).join("a"), src.join(d).join("b")).unwrap();
            }
        },
        &["--pack-size", "4"],
    )
}

/// A restore of the snapshot into `base`, then what a user did to it since. `linked_pair`:
/// hl1's two names stay the linked pair the restore made (otherwise its second is removed).
fn user_target(fx: &Fixture, base: &Path, linked_pair: bool) {
    let res = restore_pipeline(&fx.r, "latest", base, &[], &[]);
    res.assert_ok();
    let f = base.join("f");
    write(&f.join("changed"), b"changed by the user\n");
    let n = fs::metadata(f.join("samesize")).unwrap().len() as usize;
    write(&f.join("samesize"), &vec![b's'; n]);
    sh("touch -r ../../src/f/samesize samesize", &f);
    write(&f.join("newer"), b"newer\n");
    sh("touch -d '+1 day' newer 2>/dev/null || touch -d tomorrow newer", &f);
    write(&f.join("older"), b"older\n");
    sh("touch -d 2001-01-01 older", &f);
    write(&f.join("readonly-changed"), b"read-only and changed\n");
    for n in ["readonly-same", "readonly-changed"] {
        fs::set_permissions(f.join(n), fs::Permissions::from_mode(0o444)).unwrap();
    }
    fs::remove_file(f.join("missing")).unwrap();
    // One blob of three changed in place: the others are taken from the file.
    sh("printf 'XXXXXXXX' | dd of=partial bs=1 seek=1500000 conv=notrunc status=none", &f);
    fs::remove_dir_all(base.join("dirwhere")).unwrap();
    write(&base.join("dirwhere"), b"a file where the snapshot has a directory\n");
    fs::remove_file(base.join("filewhere")).unwrap();
    fs::create_dir_all(base.join("filewhere/inner")).unwrap();
    write(&base.join("filewhere/inner/z"), b"z\n");
    fs::remove_dir_all(base.join("linkwhere")).unwrap();
    std::os::unix::fs::symlink("f", base.join("linkwhere")).unwrap();
    // hl2's second name is a copy; hl3's content changed (both names).
    if !linked_pair {
        fs::remove_file(base.join("hl1/b")).unwrap();
        break_hard_links(base);
    }
    let a = fs::read(base.join("hl2/a")).unwrap();
    fs::remove_file(base.join("hl2/b")).unwrap();
    write(&base.join("hl2/b"), &a);
    write(&base.join("hl3/a"), b"changed through one name\n");
    fs::remove_file(base.join("tree/links/rel")).unwrap();
    std::os::unix::fs::symlink("elsewhere", base.join("tree/links/rel")).unwrap();
    fs::create_dir_all(base.join("extra/sub")).unwrap();
    write(&base.join("extra/sub/file"), b"not in the snapshot\n");
    write(&base.join("tree/data/extra"), b"not in the snapshot\n");
}

/// Replaces every name but the first of each file with several names by a copy, as a user
/// copying the tree without `-H` would (the restore then links them again).
fn break_hard_links(root: &Path) {
    let mut groups: BTreeMap<u64, Vec<std::path::PathBuf>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name().into_iter().map(|e| e.unwrap()) {
        let md = e.path().symlink_metadata().unwrap();
        if md.is_file() && md.nlink() > 1 {
            groups.entry(md.ino()).or_default().push(e.path().to_path_buf());
        }
    }
    assert!(groups.len() >= 4, "the tree has {} hard-linked files", groups.len());
    for names in groups.values() {
        for n in &names[1..] {
            let data = fs::read(n).unwrap();
            fs::remove_file(n).unwrap();
            write(n, &data);
        }
    }
}

/// `walk --target T | fetch-pack | unpack --target T` with the mode, `--delete` and `extra`.
fn run(fx: &Fixture, t: &Path, mode: &str, delete: bool, extra: &[&str]) -> PipelineResult {
    let ts = t.to_str().unwrap();
    let mut w = vec!["latest", "--target", ts, "--overwrite", mode];
    let mut u = vec!["--target", ts, "--overwrite", mode];
    if delete {
        w.push("--delete");
        u.push("--delete");
    }
    u.extend(extra);
    Pipeline::new()
        .stage(tool(&fx.r, "walk", &w))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &u))
        .run()
}

/// Runs the dry run, then the real run, into a copy of `base` for each mode, with and
/// without `--delete`, checking that they agree; returns "MODE DELETE PATH ACTION" for every
/// action the dry runs announced.
fn dry_and_real(fx: &Fixture, base: &Path, modes: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for mode in modes {
        for delete in [false, true] {
            let case = format!("--overwrite {mode}{}", if delete { " --delete" } else { "" });
            let t = fx.path(&format!("t-{mode}-{delete}"));
            sh(&format!("cp -a '{}' '{}'", base.display(), t.display()), fx.td.path());
            let before = state(&t);

            let dry = run(fx, &t, mode, delete, &["--dry-run"]);
            assert_eq!(state(&t), before, "{case}: the dry run changed the target");
            let mut said: BTreeMap<Vec<u8>, String> = BTreeMap::new();
            for r in support::framed_records(&dry) {
                assert_eq!(r["type"], "action", "{case}: {r}");
                let a = r["action"].as_str().unwrap().to_string();
                assert!(said.insert(path_of(&r), a).is_none(), "{case}: twice: {r}");
            }
            let dry_refused = refused(&dry.stderr_str(2), &t);

            let real = run(fx, &t, mode, delete, &[]);
            assert_eq!(dry.codes(), real.codes(), "{case}:\n{}\n{}", dry.report(), real.report());
            let after = state(&t);
            let mut restored = BTreeSet::new();
            let mut deleted = BTreeSet::new();
            for r in support::framed_records(&real) {
                match r["type"].as_str() {
                    Some("restored") => restored.insert(path_of(&r)),
                    Some("action") if r["action"] == "deleted" => deleted.insert(path_of(&r)),
                    Some("totals") => false,
                    _ => panic!("{case}: unexpected record {r}"),
                };
            }
            let real_refused = refused(&real.stderr_str(2), &t);
            assert_eq!(
                dry_refused.iter().map(|p| show(p)).collect::<Vec<_>>(),
                real_refused.iter().map(|p| show(p)).collect::<Vec<_>>(),
                "{case}: refused paths differ\n{}\n{}",
                dry.report(),
                real.report()
            );

            for (p, a) in &said {
                let (b, f) = (before.get(p), after.get(p));
                let why = format!(
                    "{case}: {} said {a}, before {:?} after {:?}",
                    show(p),
                    b.map(|e| e.0),
                    f.map(|e| e.0)
                );
                match a.as_str() {
                    "restored" => {
                        assert!(b.is_none() && f.is_some() && restored.contains(p), "{why}");
                    }
                    "updated" => {
                        assert!(b.is_some() && restored.contains(p), "{why}");
                        assert_ne!(b, f, "{why}: nothing changed");
                    }
                    "unchanged" => {
                        let (b, f) =
                            (b.unwrap_or_else(|| panic!("{why}")), f.unwrap_or_else(|| panic!("{why}")));
                        assert_eq!(b, f, "{why}: it changed");
                    }
                    "deleted" => assert!(deleted.contains(p) && f.is_none(), "{why}"),
                    other => panic!("{why}: unknown action {other}"),
                }
                seen.insert(format!("{mode} {delete} {} {a}", show(p)));
            }
            // The real run did nothing the dry run did not announce.
            for p in restored.iter().chain(&deleted) {
                assert!(said.contains_key(p), "{case}: {} was restored or deleted unannounced", show(p));
            }
            for p in before.keys().chain(after.keys()) {
                let (b, f) = (before.get(p), after.get(p));
                let moved = match (b, f) {
                    (Some(x), Some(y)) if x.0 == "dir" && y.0 == "dir" => x.2 != y.2,
                    _ => b != f,
                };
                let announced = said.iter().any(|(q, a)| {
                    (q == p && a != "unchanged")
                        || (within(p, q) && q != p && (a == "updated" || a == "deleted"))
                });
                assert!(!moved || announced, "{case}: {} changed unannounced: {b:?} -> {f:?}", show(p));
            }
        }
    }
    seen
}

#[test]
fn dry_run_says_what_the_real_run_does() {
    let fx = fixture();
    let base = fx.path("base");
    user_target(&fx, &base, false);
    let seen = dry_and_real(&fx, &base, &["always", "if-changed", "if-newer", "never"]);
    // The cases the target was made for were reached.
    for want in [
        "always false f/same unchanged",
        "always false f/changed updated",
        "always false f/samesize updated",
        "if-changed false f/samesize unchanged",
        "if-newer false f/newer unchanged",
        "if-newer false f/older updated",
        "never false f/changed unchanged",
        "always false f/missing restored",
        "always true dirwhere updated",
        "always true dirwhere/sub/y restored",
        "always true filewhere updated",
        "always true linkwhere updated",
        "always false hl1/b restored",
        "always false hl2/b updated",
        "always false hl3/b updated",
        "always true extra deleted",
        "always false f/readonly-changed updated",
        "always false f/partial updated",
    ] {
        assert!(seen.contains(want), "case not reached: {want}\n{seen:#?}");
    }
}

/// A hard-link pair the target already holds as the snapshot has it: the dry run says the
/// second name stays, and the restore must leave it so. unpack links the second name under a
/// temporary name and renames that over the name; rename(2) between two names of one inode
/// does nothing, and the temporary name (`hl1/.b.*.sluice-part`) once stayed in the target.
#[test]
fn an_existing_hard_link_pair_stays_as_it_is() {
    let fx = fixture();
    let base = fx.path("base");
    user_target(&fx, &base, true);
    let seen = dry_and_real(&fx, &base, &["always", "if-changed"]);
    for want in ["always false hl1/b unchanged", "if-changed true hl1/b unchanged"] {
        assert!(seen.contains(want), "case not reached: {want}\n{seen:#?}");
    }
}
