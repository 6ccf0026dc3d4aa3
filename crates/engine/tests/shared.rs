//! A shared store in one process: an owner and clients, each its own `SharedStore` (the
//! writer lock is per open file, so the second open becomes a client). The multi-process
//! cases (kill -9 of the owner, hostile peers) are in `__test__/shared.spec.mjs`.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use selene_persist_engine::Sink;
use selene_persist_engine::io::{StdFs, Vfs};
use selene_persist_engine::shared::{SharedOptions, SharedStore};
use selene_persist_engine::store::Store;
use selene_persist_engine::{AppendRequest, Entry, NewEntries, Result, WalOptions};

fn open(dir: &std::path::Path, producer: Option<u64>) -> Arc<SharedStore> {
    let vfs: Arc<dyn Vfs> = StdFs::shared();
    SharedStore::open(&vfs, dir, WalOptions::default(), SharedOptions { producer }).unwrap()
}

fn append(sink: &dyn Sink, payload: &'static [u8]) -> mpsc::Receiver<Result<RangeInclusive<u64>>> {
    let (tx, rx) = mpsc::channel();
    sink.append_all(vec![AppendRequest {
        entries: NewEntries::packed(Bytes::from_static(payload), vec![payload.len() as u32])
            .unwrap(),
        reply: Box::new(move |outcome| drop(tx.send(outcome))),
        chained: false,
    }]);
    rx
}

fn close(sink: &dyn Sink) {
    let (tx, rx) = mpsc::channel();
    sink.close(Box::new(move |outcome| drop(tx.send(outcome))));
    rx.recv().unwrap().unwrap();
}

fn payloads(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let vfs: Arc<dyn Vfs> = StdFs::shared();
    let store = Store::open(&vfs, dir, WalOptions::default()).unwrap();
    let mut replay = store.replay(0).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = replay.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|e| (e.sequence, e.payload.to_vec())));
    }
}

#[test]
fn a_client_appends_through_the_owner_and_takes_over_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    assert!(owner.is_owner());
    let client = open(dir.path(), Some(9));
    assert!(!client.is_owner());
    let a = append(&*owner, b"a");
    let b = append(&*client, b"b");
    let c = append(&*client, b"c");
    let mut got = [a, b, c].map(|rx| *rx.recv().unwrap().unwrap().start());
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
    // The client's state follows the owner's answers.
    assert_eq!(client.state().last_sequence, 3);
    let synced = client.commit_now(Vec::new()).unwrap();
    assert_eq!(synced, None);
    close(&*owner);
    // The client finds the owner gone and becomes the owner itself.
    let d = append(&*client, b"d").recv().unwrap().unwrap();
    assert_eq!(*d.start(), 4);
    assert!(client.is_owner());
    let later = open(dir.path(), None);
    assert!(!later.is_owner());
    assert_eq!(*append(&*later, b"e").recv().unwrap().unwrap().start(), 5);
    close(&*later);
    close(&*client);
    let log = payloads(dir.path());
    assert_eq!(
        log,
        [b"a", b"b", b"c", b"d", b"e"]
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1, p.to_vec()))
            .collect::<Vec<_>>()
    );
}
