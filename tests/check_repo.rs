//! check-repo against repositories restic 0.14 made and checked: a sound one passes with a
//! verdict per object; each kind of damage restic's `check` finds (a flipped byte, a missing
//! pack, a lost index file, a wrong size) is found too, named, and exits 1, with restic
//! agreeing; a pack no index names is only a warning; no lock stays behind.

mod support;

use std::fs;
use std::path::Path;

use serde_json::Value;
use support::fixture::{random_bytes, Fixture};
use support::sluice::{framed_records, tool};
use support::{Pipeline, PipelineResult};

fn fixture() -> Fixture {
    Fixture::new(
        |src: &Path| {
            fs::write(src.join("big.bin"), random_bytes(1, 9 << 20)).unwrap();
            fs::create_dir(src.join("d")).unwrap();
            for i in 0..20 {
                fs::write(src.join(format!("d/f{i}")), random_bytes(100 + i, 3000 + i as usize * 100))
                    .unwrap();
            }
        },
        &["--pack-size", "4"],
    )
}

fn check(f: &Fixture, args: &[&str]) -> PipelineResult {
    Pipeline::new().stage(tool(&f.r, "check-repo", args)).run()
}

fn errors(records: &[Value]) -> Vec<(String, String, String)> {
    records
        .iter()
        .filter(|r| r.get("error").is_some())
        .map(|r| {
            (
                r["object"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
                r["error"].to_string(),
            )
        })
        .collect()
}

/// Flips a byte in the largest pack; returns the pack's name.
fn flip_a_byte(f: &Fixture) -> String {
    let packs = f.r.pack_files();
    let victim = packs.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(victim).unwrap();
    bytes[1000] ^= 0x40;
    fs::write(victim, bytes).unwrap();
    victim.file_name().unwrap().to_str().unwrap().to_string()
}

fn restic_check_fails(f: &Fixture) {
    restic_check_fails_with(f, &["check", "--read-data"]);
}

/// `restic check ARGS` fails on the fixture as damaged.
fn restic_check_fails_with(f: &Fixture, args: &[&str]) {
    let out = f.r.cmd(args);
    assert!(!out.status.success(), "restic check found nothing wrong");
}

#[test]
fn a_sound_repository_passes_with_a_verdict_per_object() {
    let f = fixture();
    for args in [&[][..], &["--read-data"], &["--read-data-subset", "1/2"], &["--read-data-subset", "50%"]] {
        let res = check(&f, args);
        res.assert_ok();
        let recs = framed_records(&res);
        assert!(errors(&recs).is_empty(), "{}", res.report());
        // With --read-data a pack read gets a second verdict, the read's.
        let packs: std::collections::BTreeSet<&str> =
            recs.iter().filter(|r| r["object"] == "pack").map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(packs.len(), f.r.pack_files().len(), "{}", res.report());
        assert_eq!(recs.iter().filter(|r| r["object"] == "snapshot").count(), 1);
        assert!(recs.iter().any(|r| r["object"] == "index"));
        assert!(res.stderr_str(0).contains("no errors were found"), "{}", res.report());
    }
    assert_eq!(fs::read_dir(f.r.repo.join("locks")).unwrap().count(), 0, "a lock stayed behind");
}

#[test]
fn a_flipped_byte_is_found_only_by_reading_data() {
    let f = fixture();
    let name = flip_a_byte(&f);
    check(&f, &[]).assert_ok();
    let res = check(&f, &["--read-data"]);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let errs = errors(&framed_records(&res));
    assert!(
        errs.iter().any(|(o, id, e)| o == "pack" && *id == name && e.contains("does not match")),
        "{errs:?}"
    );
    let err = res.stderr_str(0);
    assert!(err.contains(&format!("pack {}", &name[..8])), "{err}");
    assert!(err.lines().last().unwrap().contains("errors"), "{err}");
    restic_check_fails(&f);
}

#[test]
fn a_missing_pack_and_a_wrong_size_are_errors() {
    let f = fixture();
    let packs = f.r.pack_files();
    fs::remove_file(&packs[0]).unwrap();
    let gone = packs[0].file_name().unwrap().to_str().unwrap().to_string();
    let f2 = fs::OpenOptions::new().append(true).open(&packs[1]).unwrap();
    f2.set_len(fs::metadata(&packs[1]).unwrap().len() + 1).unwrap();
    let longer = packs[1].file_name().unwrap().to_str().unwrap().to_string();
    let res = check(&f, &[]);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let errs = errors(&framed_records(&res));
    assert!(
        errs.iter().any(|(o, id, e)| o == "pack" && *id == gone && e.contains("does not exist")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|(o, id, e)| o == "pack" && *id == longer && e.contains("size")), "{errs:?}");
    // Without --read-data: restic finds both from the listing, where reading the missing
    // pack would retry it for most of a minute.
    restic_check_fails_with(&f, &["check"]);
}

#[test]
fn a_lost_index_leaves_trees_pointing_nowhere_and_packs_unreferenced() {
    let f = fixture();
    for e in fs::read_dir(f.r.repo.join("index")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let res = check(&f, &[]);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let recs = framed_records(&res);
    let errs = errors(&recs);
    assert!(errs.iter().any(|(o, _, e)| o == "tree" && e.contains("not in index")), "{errs:?}");
    let warned = recs.iter().filter(|r| r["object"] == "pack" && r.get("warning").is_some()).count();
    assert_eq!(warned, f.r.pack_files().len());
    restic_check_fails(&f);
}

#[test]
fn an_unreferenced_pack_is_a_warning_not_an_error() {
    let f = fixture();
    let packs = f.r.pack_files();
    // A copy under its own hash is a well-formed pack that no index names.
    let bytes = fs::read(&packs[0]).unwrap();
    let mut changed = bytes.clone();
    changed.push(0);
    let id = hex_sha256(&changed);
    let dir = f.r.repo.join("data").join(&id[..2]);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&id), &changed).unwrap();
    let res = check(&f, &[]);
    res.assert_ok();
    let recs = framed_records(&res);
    assert!(errors(&recs).is_empty());
    assert!(recs.iter().any(|r| r["id"] == id.as_str() && r.get("warning").is_some()), "{}", res.report());
    assert!(res.stderr_str(0).contains("not referenced"), "{}", res.report());
    // restic 0.14 agrees that this is no error.
    assert!(f.r.cmd(&["check"]).status.success());
}

#[test]
fn wrong_password_and_missing_repository_have_restic_codes() {
    let f = fixture();
    let pw = f.path("wrong");
    fs::write(&pw, "not it").unwrap();
    let res = Pipeline::new()
        .stage(support::argv([
            "check-repo".as_ref(),
            "--repo".as_ref(),
            f.r.repo.as_os_str(),
            "--password-file".as_ref(),
            pw.as_os_str(),
        ]))
        .run();
    assert_eq!(res.codes(), vec![12], "{}", res.report());
    let res = Pipeline::new()
        .stage(support::argv([
            "check-repo".as_ref(),
            "--repo".as_ref(),
            f.path("nowhere").as_os_str(),
            "--password-file".as_ref(),
            pw.as_os_str(),
        ]))
        .run();
    assert_eq!(res.codes(), vec![10], "{}", res.report());
}

/// A lock file that does not decrypt is ignored with a warning, as restic ignores it; the
/// warning is check-repo's own, not signed by another tool (it said `pack:`).
#[test]
fn an_unreadable_lock_is_a_warning_in_check_repos_name() {
    let f = fixture();
    let junk = b"not a lock\n";
    let name = f.r.repo.join("locks").join(hex_sha256(junk));
    fs::write(&name, junk).unwrap();
    let res = check(&f, &[]);
    res.assert_ok();
    let err = res.stderr_str(0);
    let short = &hex_sha256(junk)[..8];
    let line = err.lines().find(|l| l.contains(short)).unwrap_or_else(|| panic!("no warning:\n{err}"));
    assert!(line.starts_with("check-repo: lock "), "{line}");
    assert!(line.contains("unreadable, ignored"), "{line}");
    fs::remove_file(&name).unwrap();
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// `check-repo` typed at a terminal wrote a JSON record per index file, pack and snapshot
/// there, thousands of lines in which its few lines on stderr (the problems, the verdict) were
/// lost, and which a full stdout buffer could cut through one of those lines. On a terminal
/// it writes no records, as unpack writes none: its lines on stderr are the output.
#[test]
fn no_records_on_a_terminal() {
    use support::progress::{sh_line, under_terminal};
    let f = fixture();
    let res = under_terminal(&sh_line(&[tool(&f.r, "check-repo", &[])], ""), &[]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(!out.contains("\"type\":"), "records on the terminal: {out:?}");
    assert_eq!(out.trim_end(), "check-repo: no errors were found", "{out:?}");

    let name = flip_a_byte(&f);
    let res = under_terminal(&sh_line(&[tool(&f.r, "check-repo", &["--read-data"])], ""), &[]);
    assert_eq!(res.codes(), [1], "{}", res.report());
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(!out.contains("\"type\":"), "records on the terminal: {out:?}");
    assert!(out.lines().any(|l| l.starts_with(&format!("check-repo: pack {}", &name[..8]))), "{out:?}");
    // Piped, the records are all there.
    let res = check(&f, &["--read-data"]);
    assert!(errors(&framed_records(&res)).iter().any(|(o, id, _)| o == "pack" && *id == name));
}
