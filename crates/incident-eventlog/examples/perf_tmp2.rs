use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let db = sled::open(dir.path()).unwrap();
    let n: u64 = 200_000;
    let body = vec![b'x'; 400 + 85 + 40];
    let t = Instant::now();
    let mut i = 0u64;
    let (mut tb, mut tf, mut tg) = (
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    while i < n {
        let mut b = sled::Batch::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            i += 1;
            let id = format!("e0198c3a0-{i:012}");
            let _ = db.contains_key(id.as_bytes()).unwrap();
            let mut k = vec![b'r'];
            k.extend_from_slice(&i.to_be_bytes());
            b.insert(k, body.clone());
            b.insert(id.as_bytes(), &i.to_be_bytes());
            let mut v = format!("v\0\0INC-{}", i % 50_000).into_bytes();
            v.extend_from_slice(&i.to_be_bytes());
            b.insert(v, &i.to_be_bytes());
        }
        tg += t0.elapsed();
        let t1 = Instant::now();
        db.apply_batch(b).unwrap();
        tb += t1.elapsed();
        let t2 = Instant::now();
        db.flush().unwrap();
        tf += t2.elapsed();
    }
    println!(
        "raw {n}: {:?} stage {tg:?} batch {tb:?} flush {tf:?}",
        t.elapsed()
    );
}
