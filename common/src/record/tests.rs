use std::io;

use super::*;

fn stream(lines: &[&str]) -> Reader<io::Cursor<Vec<u8>>> {
    let mut s = lines.join("\n");
    s.push('\n');
    Reader::new(io::Cursor::new(s.into_bytes()), "test")
}

const H: &str = r#"{"type":"header","format":"sluice-ndjson","version":1,"producer":"t"}"#;

fn id(c: char) -> Id {
    Id::parse(&c.to_string().repeat(64)).unwrap()
}

fn loc() -> BlobLoc {
    BlobLoc { id: id('a'), pack: id('b'), offset: 7, length: 40, uncompressed_length: Some(9) }
}

/// One line of each record type as version 1 of the format writes it, byte for byte: a
/// change here is a change of the wire format, which existing streams and other
/// implementations rely on.
#[test]
fn wire_format_is_pinned() {
    let (a, b) = (id('a').to_string(), id('b').to_string());
    let node: Box<RawValue> = RawValue::from_string(r#"{"name":"f","type":"file"}"#.into()).unwrap();
    let rec = NodeRecord {
        path: "d/f".into(),
        path_raw: None,
        node,
        blobs: vec![loc()],
        hardlink: None,
        hardlink_raw: None,
        in_target: vec![0],
        status: Some("new".into()),
        parent_tree: None,
    };
    let counts = Counts { files_new: 1, data_blobs: 2, ..Counts::default() };
    let mut w = Writer::new(Vec::new());
    w.header("t", Some(id('a'))).unwrap();
    w.write(&SnapshotRecord {
        id: id('a'),
        short_id: "aaaaaaaa".into(),
        time: "2025-01-01T00:00:00Z".into(),
        parent: None,
        tree: id('b'),
        paths: vec!["/x".into()],
        hostname: "h".into(),
        username: String::new(),
        tags: vec![],
    })
    .unwrap();
    w.write(&rec).unwrap();
    w.write_with_data(&BlobRecord { loc: loc() }, b"xyz").unwrap();
    w.write(&BlobRecord { loc: loc() }).unwrap();
    w.write(&PackHeaderRecord { seq: Some(1), pack: Some(id('b')), size: 99, header: "aGRy".into() })
        .unwrap();
    w.write_with_data(&PackDataRecord { seq: None, offset: 0 }, b"p").unwrap();
    w.write(&Restored(&rec)).unwrap();
    w.write(&Verdict {
        path: "d/f".into(),
        path_raw: None,
        ok: false,
        size: 3,
        error: Some("differs".into()),
    })
    .unwrap();
    w.write(&BlobCheck {
        pack: None,
        id: id('a'),
        blob_type: "data".into(),
        offset: 0,
        length: 40,
        uncompressed_length: None,
        ok: true,
        error: None,
    })
    .unwrap();
    w.write(&SourceRecord {
        paths: vec!["/x".into()],
        hostname: "h".into(),
        excludes: vec![],
        parent: Some(id('b')),
        time: "2025-01-01T00:00:00Z".into(),
    })
    .unwrap();
    w.write_with_data(&ChunkRecord { id: id('a') }, b"").unwrap();
    w.write_with_data(&RepoFileRecord { kind: "index".into(), id: id('a') }, b"i").unwrap();
    w.write(&SummaryRecord {
        counts,
        files_read: 3,
        bytes_read: 4,
        total_duration: 1.5,
        snapshot_id: id('a'),
        backup_start: None,
        backup_end: Some("2025-01-01T00:00:02Z".into()),
    })
    .unwrap();
    w.write(&BlobFailedRecord { loc: loc(), error: "gone".into() }).unwrap();
    w.write(&RequiresRecord { packs: vec![id('b')], indexes: vec![] }).unwrap();
    w.write(&DeleteRecord { path: "d/old".into(), path_raw: None }).unwrap();
    w.write(&ActionRecord { action: "updated".into(), path: "d/f".into(), path_raw: None, size: Some(9) })
        .unwrap();
    w.write(&Checked {
        object: "pack".into(),
        id: id('b'),
        error: Some("does not exist".into()),
        warning: None,
    })
    .unwrap();
    w.write(&TotalsRecord { nodes: 3, files: 2, bytes: 10 }).unwrap();
    w.write(&ProgressRecord { files: 1, bytes: 5, added: 4 }).unwrap();
    let text = String::from_utf8(w.finish().unwrap()).unwrap();
    let l = format!(r#""id":"{a}","pack":"{b}","offset":7,"length":40,"uncompressed_length":9"#);
    let node = format!(
        r#""path":"d/f","node":{{"name":"f","type":"file"}},"blobs":[{{{l}}}],"in_target":[0],"status":"new""#
    );
    let want = [
        format!(
            r#"{{"type":"header","format":"sluice-ndjson","version":1,"producer":"t","snapshot":"{a}"}}"#
        ),
        format!(
            r#"{{"type":"snapshot","id":"{a}","short_id":"aaaaaaaa","time":"2025-01-01T00:00:00Z","tree":"{b}","paths":["/x"],"hostname":"h"}}"#
        ),
        format!(r#"{{"type":"node",{node}}}"#),
        format!(r#"{{"type":"blob",{l},"data":"eHl6"}}"#),
        format!(r#"{{"type":"blob",{l}}}"#),
        format!(r#"{{"type":"pack_header","seq":1,"pack":"{b}","size":99,"header":"aGRy"}}"#),
        r#"{"type":"pack_data","offset":0,"data":"cA=="}"#.to_string(),
        format!(r#"{{"type":"restored",{node}}}"#),
        r#"{"type":"verdict","path":"d/f","ok":false,"size":3,"error":"differs"}"#.to_string(),
        format!(r#"{{"type":"blob_check","id":"{a}","blob_type":"data","offset":0,"length":40,"ok":true}}"#),
        format!(
            r#"{{"type":"source","paths":["/x"],"hostname":"h","parent":"{b}","time":"2025-01-01T00:00:00Z"}}"#
        ),
        format!(r#"{{"type":"chunk","id":"{a}","data":""}}"#),
        format!(r#"{{"type":"repo_file","kind":"index","id":"{a}","data":"aQ=="}}"#),
        format!(
            r#"{{"type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":0,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":0,"data_added":0,"data_added_packed":0,"total_files_processed":0,"total_bytes_processed":0,"files_read":3,"bytes_read":4,"total_duration":1.5,"snapshot_id":"{a}","backup_end":"2025-01-01T00:00:02Z"}}"#
        ),
        format!(r#"{{"type":"blob_failed",{l},"error":"gone"}}"#),
        format!(r#"{{"type":"requires","packs":["{b}"]}}"#),
        r#"{"type":"delete","path":"d/old"}"#.to_string(),
        r#"{"type":"action","action":"updated","path":"d/f","size":9}"#.to_string(),
        format!(r#"{{"type":"checked","object":"pack","id":"{b}","error":"does not exist"}}"#),
        r#"{"type":"totals","nodes":3,"files":2,"bytes":10}"#.to_string(),
        r#"{"type":"progress","files":1,"bytes":5,"added":4}"#.to_string(),
        r#"{"type":"end","records":20}"#.to_string(),
    ];
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want);
    // Every type is covered, and each line reads back.
    let mut seen: Vec<Tag> = vec![Tag::Header, Tag::End];
    let mut r = Reader::new(io::Cursor::new(text.clone().into_bytes()), "t");
    r.read_header().unwrap();
    while let Some(line) = r.next_line().unwrap() {
        seen.push(line.tag());
        match line.tag() {
            Tag::Node | Tag::Restored => assert_eq!(line.parse::<NodeRecord>().unwrap().blobs, [loc()]),
            Tag::Blob => assert_eq!(line.parse::<BlobRecord>().unwrap().loc, loc()),
            Tag::BlobFailed => assert_eq!(line.parse::<BlobFailedRecord>().unwrap().loc, loc()),
            Tag::Summary => {
                let s: SummaryRecord = line.parse().unwrap();
                assert_eq!((s.counts.files_new, s.counts.data_blobs, s.bytes_read), (1, 2, 4));
            }
            Tag::Chunk => assert_eq!(line.payload().unwrap().as_deref(), Some("")),
            _ => {}
        }
    }
    for t in Tag::ALL {
        assert!(seen.contains(t), "{t:?} is not pinned");
    }
    assert_eq!(TYPES.len(), Tag::ALL.len());
}

#[test]
fn round_trip_with_payload() {
    let mut w = Writer::new(Vec::new());
    w.header("t", None).unwrap();
    w.write_with_data(&BlobRecord { loc: loc() }, b"\x00\x01binary").unwrap();
    w.write(&BlobRecord { loc: loc() }).unwrap();
    let text = String::from_utf8(w.finish().unwrap()).unwrap();
    let mut r = Reader::new(io::Cursor::new(text.into_bytes()), "t");
    r.read_header().unwrap();
    let line = r.next_line().unwrap().unwrap();
    assert_eq!(line.tag(), Tag::Blob);
    assert!(matches!(line.payload().unwrap(), Some(std::borrow::Cow::Borrowed(_))));
    let mut buf = Vec::new();
    line.decode_payload(&mut buf).unwrap();
    assert_eq!(buf, b"\x00\x01binary");
    assert_eq!(line.parse::<BlobRecord>().unwrap().loc.offset, 7);
    let line = r.next_line().unwrap().unwrap();
    assert!(line.payload().unwrap().is_none());
    // No payload: the buffer is emptied, not left holding the line before's bytes.
    line.decode_payload(&mut buf).unwrap();
    assert!(buf.is_empty());
    assert!(r.next_line().unwrap().is_none());
}

#[test]
fn payload_of_a_line_from_elsewhere() {
    // Not our writer's shape (payload first, `/` escaped): still read, through the parser.
    let line = r#"{"type":"chunk","data":"eHl6\/w==","id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
    let mut r = stream(&[H, line, r#"{"type":"end","records":1}"#]);
    r.read_header().unwrap();
    let l = r.next_line().unwrap().unwrap();
    assert_eq!(l.parse::<ChunkRecord>().unwrap().id, id('a'));
    let mut buf = Vec::new();
    l.decode_payload(&mut buf).unwrap();
    assert_eq!(buf, b"xyz\xff");
}

#[test]
fn bad_payload_names_its_line() {
    let mut r = stream(&[H, r#"{"type":"chunk","id":"x","data":"a"}"#, r#"{"type":"end","records":1}"#]);
    r.read_header().unwrap();
    let l = r.next_line().unwrap().unwrap();
    let e = l.decode_payload(&mut Vec::new()).unwrap_err().to_string();
    assert!(e.starts_with("line 2: ") && e.contains("bad base64"), "{e}");
    let e = l.parse::<ChunkRecord>().unwrap_err().to_string();
    assert!(e.starts_with("line 2: ") && e.contains("malformed chunk record"), "{e}");
}

#[test]
fn missing_end_is_an_error() {
    let mut r = stream(&[H, r#"{"type":"end","records":5}"#]);
    r.read_header().unwrap();
    let e = r.next_line().err().unwrap().to_string();
    assert!(e.contains("line 2") && e.contains("counts 5"), "{e}");

    let mut r = stream(&[H]);
    r.read_header().unwrap();
    let e = r.next_line().err().unwrap().to_string();
    assert!(e.contains("without its end record"), "{e}");
}

#[test]
fn unknown_type_and_malformed_lines() {
    let mut r = stream(&[H, r#"{"type":"bogus"}"#]);
    r.read_header().unwrap();
    let e = r.next_line().err().unwrap().to_string();
    assert!(e.contains("line 2") && e.contains("unknown record type"), "{e}");

    let mut r = stream(&[H, "{not json"]);
    r.read_header().unwrap();
    assert!(r.next_line().err().unwrap().to_string().contains("line 2"));

    let mut r = stream(&[H, H]);
    r.read_header().unwrap();
    assert!(r.next_line().err().unwrap().to_string().contains("second header"));

    let mut r = stream(&[r#"{"type":"node"}"#]);
    assert!(r.read_header().is_err());
}

#[test]
fn unknown_fields_are_ignored_and_type_may_come_later() {
    let mut r = stream(&[H, r#"{"records":0,"x":1,"type":"end"}"#]);
    r.read_header().unwrap();
    assert!(r.next_line().unwrap().is_none());
}

#[test]
fn node_keeps_raw_json() {
    let line = r#"{"type":"node","path":"a","node":{"name":"a","type":"file","content":[]}}"#;
    let mut r = stream(&[H, line, r#"{"type":"end","records":1}"#]);
    r.read_header().unwrap();
    let n: NodeRecord = r.next_line().unwrap().unwrap().parse().unwrap();
    assert_eq!(n.node.get(), r#"{"name":"a","type":"file","content":[]}"#);
    // A stream from before `in_target` existed: every blob travels.
    assert!(n.in_target.is_empty() && n.check_in_target().is_ok());
}

#[test]
fn in_target_must_name_blobs_in_order() {
    let mut rec: NodeRecord = serde_json::from_str(&format!(
        r#"{{"path":"f","node":{{}},"blobs":[{},{}]}}"#,
        serde_json::to_string(&loc()).unwrap(),
        serde_json::to_string(&loc()).unwrap()
    ))
    .unwrap();
    rec.in_target = vec![1];
    assert!(rec.check_in_target().is_ok());
    assert!(rec.travels(0) && !rec.travels(1));
    for bad in [vec![2], vec![1, 0], vec![0, 0]] {
        rec.in_target = bad;
        assert!(rec.check_in_target().is_err(), "{:?}", rec.in_target);
    }
}

/// An input that hands out at most a few bytes per read, as a pipe may.
struct Trickle(io::Cursor<Vec<u8>>, usize);

impl io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.1 = self.1 % 7 + 1;
        let n = buf.len().min(self.1);
        self.0.read(&mut buf[..n])
    }
}

/// Lines come out whole and in order however the input is cut, small ones many to a read
/// and payloads larger than a read (which are read in place); the end is checked as before.
#[test]
fn lines_across_reads_of_any_size() {
    let big: Vec<u8> = (0..(reader::READ_STEP * 2 + 5)).map(|i| (i * 31 % 251) as u8).collect();
    let mut w = Writer::new(Vec::new());
    w.header("t", None).unwrap();
    for i in 0..300 {
        let payload: &[u8] = if i % 100 == 50 { &big } else { b"small" };
        w.write_with_data(&BlobRecord { loc: loc() }, payload).unwrap();
    }
    let bytes = w.finish().unwrap();
    for trickle in [false, true] {
        let input: Box<dyn io::Read> = match trickle {
            true => Box::new(Trickle(io::Cursor::new(bytes.clone()), 0)),
            false => Box::new(io::Cursor::new(bytes.clone())),
        };
        let mut r = Reader::new(input, "t");
        r.read_header().unwrap();
        let (mut n, mut buf) = (0, Vec::new());
        while let Some(line) = r.next_line().unwrap() {
            line.decode_payload(&mut buf).unwrap();
            assert_eq!(buf, if n % 100 == 50 { &big[..] } else { b"small" }, "line {}", line.no);
            n += 1;
        }
        assert_eq!(n, 300);
    }
    // Cut in the middle of the big line: said so, with its number.
    let cut = &bytes[..bytes.len() / 2];
    let mut r = Reader::new(io::Cursor::new(cut.to_vec()), "t");
    r.read_header().unwrap();
    let e = first_error(&mut r);
    assert!(e.contains("cut off in the middle of a line"), "{e}");
    // A second stream glued on, already in the buffer with the end record.
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes);
    let mut r = Reader::new(io::Cursor::new(twice), "t");
    r.read_header().unwrap();
    let e = first_error(&mut r);
    assert!(e.contains("data after the end record"), "{e}");
}

/// Reads on to the first error, which a stream that ends cleanly fails to give.
fn first_error(r: &mut Reader<impl io::Read>) -> String {
    loop {
        match r.next_line() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended cleanly"),
            Err(e) => return e.to_string(),
        }
    }
}
