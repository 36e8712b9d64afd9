use incident_eventlog::*;
use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let n: u64 = 1_000_000;
    let body = vec![b'x'; 400];
    let t = Instant::now();
    let mut i = 0u64;
    while i < n {
        let mut reqs = Vec::new();
        for _ in 0..100 {
            let events = (0..10)
                .map(|k| {
                    i += 1;
                    NewEvent::new(format!("0198c3a0-{i:012}-{k}"), body.clone())
                })
                .collect();
            reqs.push(AppendRequest::new(
                format!("INC-{}", i % 50_000),
                ExpectedVersion::Any,
                events,
            ));
        }
        for r in log.append_batch(reqs) {
            r.unwrap();
        }
    }
    println!("append {n}: {:?}", t.elapsed());
    let t = Instant::now();
    let mut bytes = 0usize;
    for r in log.read_from(1) {
        bytes += r.unwrap().event.len();
    }
    println!("read_from: {:?} ({bytes})", t.elapsed());
    let t = Instant::now();
    let mut c = 0usize;
    for kv in log_db_iter(dir.path()) {
        c += kv;
    }
    let _ = c;
    println!("(raw iterate skipped) {:?}", t.elapsed());
    let t = Instant::now();
    log.verify().unwrap();
    println!("verify: {:?}", t.elapsed());
    let head = log.head();
    drop(log);
    let t = Instant::now();
    let log = EventLog::open(dir.path()).unwrap();
    println!("reopen: {:?}", t.elapsed());
    assert_eq!(log.head(), head);
    let t = Instant::now();
    let mut bytes = 0usize;
    for r in log.read_from(1) {
        bytes += r.unwrap().event.len();
    }
    println!("read_from after reopen: {:?} ({bytes})", t.elapsed());
    drop(log);
    let db = sled::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut bytes = 0usize;
    for kv in db.scan_prefix([layout::RECORD]) {
        let (k, v) = kv.unwrap();
        let seq = layout::record_key_seq(&k).unwrap();
        bytes += layout::decode_record(seq, &v).unwrap().event.len();
    }
    println!("raw sled iterate+decode: {:?} ({bytes})", t.elapsed());
    let du = std::process::Command::new("du")
        .arg("-sh")
        .arg(dir.path())
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&du.stdout));
}
fn log_db_iter(_p: &std::path::Path) -> Vec<usize> {
    vec![]
}
