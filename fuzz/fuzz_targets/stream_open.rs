//! The STREAM opener (`format::stream::StreamOpener`), as a download opens a file's chunks.
//!
//! Input, first byte even — arbitrary chunks: a key selector (the keys of
//! `stream_v1.txt`), a chunk-size byte (0: the real 1 MiB, else that many bytes), then
//! records `index (u64 BE) ‖ flags (bit 0: last) ‖ len (u16 BE) ‖ sealed chunk`. Whatever
//! opens must be consistent: a refused chunk leaves the opener as it was, an accepted one
//! moves it on by exactly one, and a whole stream opened from index 0 seals back to the
//! very same bytes.
//!
//! First byte odd — seal, tamper, open: a small chunk size, an operation (none, flip a
//! bit, drop, duplicate, swap, truncate, move the last flag, resume in the middle), its
//! position, then the plaintext. The sealed stream is changed as the operation says and
//! opened in order: it must open to the plaintext when nothing changed (or from the
//! resumed chunk on), fail otherwise, and never yield a chunk that is not the one sealed
//! at that position.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::crypto::Key32;
use vault_core::format::stream::{CHUNK_LEN, StreamOpener, StreamSealer, TAG_LEN};
use vault_fuzz::{Reader, key32};

fn key(selector: u8) -> Key32 {
    let bytes: [u8; 32] = match selector % 3 {
        0 => std::array::from_fn(|i| i as u8),
        1 => [0xA5; 32],
        _ => [0x3C; 32],
    };
    key32(&bytes)
}

fn opener(key: &Key32, chunk_len: usize) -> StreamOpener {
    if chunk_len == CHUNK_LEN {
        StreamOpener::new(key)
    } else {
        StreamOpener::fuzzing_with_chunk_len(key, chunk_len)
    }
}

fn sealer(key: &Key32, chunk_len: usize) -> StreamSealer {
    if chunk_len == CHUNK_LEN {
        StreamSealer::new(key)
    } else {
        StreamSealer::fuzzing_with_chunk_len(key, chunk_len)
    }
}

/// Seals `data` in chunks of `chunk_len` the way `seal_all` does.
fn seal(key: &Key32, chunk_len: usize, data: &[u8]) -> Vec<Vec<u8>> {
    let mut sealer = sealer(key, chunk_len);
    if data.is_empty() {
        return vec![sealer.seal_chunk(&[], true).expect("an empty file seals")];
    }
    let count = data.len().div_ceil(chunk_len);
    data.chunks(chunk_len)
        .enumerate()
        .map(|(i, c)| sealer.seal_chunk(c, i + 1 == count).expect("a chunk seals"))
        .collect()
}

fn arbitrary_chunks(mut r: Reader) {
    let key = key(r.u8());
    let chunk_len = match r.u8() {
        0 => CHUNK_LEN,
        n => usize::from(n),
    };
    let mut opener = opener(&key, chunk_len);
    // (index, sealed, plaintext) of every chunk that opened, in order.
    let mut opened: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut last_opened = false;
    while !r.rest_is_empty() {
        let index = r.u64();
        let last = r.u8() & 1 == 1;
        let sealed = r.long().to_vec();
        let (before_next, before_finished) = (opener.next_index(), opener.is_finished());
        match opener.open_chunk(index, &sealed, last) {
            Ok(plain) => {
                assert!(!before_finished, "a chunk opened after the last one");
                if let Some(expected) = before_next {
                    assert_eq!(index, expected, "a chunk opened out of order");
                }
                assert_eq!(plain.len() + TAG_LEN, sealed.len());
                assert!(plain.len() <= chunk_len);
                if !last {
                    assert_eq!(plain.len(), chunk_len, "a short chunk opened as not last");
                }
                assert_eq!(opener.is_finished(), last);
                assert_eq!(
                    opener.next_index(),
                    if last { None } else { Some(index + 1) }
                );
                opened.push((index, sealed, plain.to_vec()));
                last_opened = last;
            }
            Err(_) => {
                assert_eq!(
                    opener.next_index(),
                    before_next,
                    "a refused chunk moved the opener"
                );
                assert_eq!(opener.is_finished(), before_finished);
            }
        }
    }
    assert_eq!(opener.finish().is_ok(), last_opened);
    if last_opened && opened.first().is_some_and(|(i, _, _)| *i == 0) {
        // A whole file: sealing its plaintext again gives the same chunks.
        let data: Vec<u8> = opened.iter().flat_map(|(_, _, p)| p.clone()).collect();
        let chunks: Vec<Vec<u8>> = opened.into_iter().map(|(_, s, _)| s).collect();
        assert_eq!(
            seal(&key, chunk_len, &data),
            chunks,
            "a stream that opened does not seal back"
        );
    }
}

fn tampered(mut r: Reader) {
    let chunk_len = 1 + usize::from(r.u8() % 32);
    let op = r.u8() % 8;
    let pos = usize::from(r.u16());
    let data = r.rest();
    let key = key(0);
    let sealed = seal(&key, chunk_len, data);
    let n = sealed.len();
    let genuine = |i: usize| -> &[u8] {
        if data.is_empty() {
            &[]
        } else {
            &data[i * chunk_len..((i + 1) * chunk_len).min(data.len())]
        }
    };
    // The stream as the opener receives it: (position index, chunk, last flag, which sealed chunk it is).
    let mut stream: Vec<(u64, Vec<u8>, bool)> = sealed
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64, c.clone(), i + 1 == n))
        .collect();
    let mut start = 0usize;
    let changed = match op {
        0 => false,
        1 => {
            let total: usize = sealed.iter().map(Vec::len).sum();
            let mut at = pos % total;
            let chunk = stream.iter_mut().find(|(_, c, _)| {
                let here = at < c.len();
                if !here {
                    at -= c.len();
                }
                here
            });
            let chunk = chunk.expect("the position is in a chunk");
            chunk.1[at] ^= 1 << (pos % 8);
            true
        }
        2 => {
            let k = pos % n;
            stream.remove(k);
            // Positions are where the chunks arrive, not where they were sealed.
            for (i, c) in stream.iter_mut().enumerate() {
                c.0 = i as u64;
            }
            true
        }
        3 => {
            let k = pos % n;
            let copy = stream[k].clone();
            stream.insert(k + 1, copy);
            for (i, c) in stream.iter_mut().enumerate() {
                c.0 = i as u64;
                c.2 = i + 1 == n + 1;
            }
            true
        }
        4 if n >= 2 => {
            let k = pos % (n - 1);
            let (a, b) = (stream[k].1.clone(), stream[k + 1].1.clone());
            stream[k].1 = b;
            stream[k + 1].1 = a;
            true
        }
        5 => {
            stream.truncate(pos % n);
            true
        }
        6 => {
            let k = pos % n;
            stream[k].2 = !stream[k].2;
            true
        }
        7 => {
            start = pos % n;
            stream.drain(..start);
            false
        }
        _ => false,
    };
    let mut opener = opener(&key, chunk_len);
    let mut out = Vec::new();
    let mut result = Ok(());
    for (index, chunk, last) in &stream {
        match opener.open_chunk(*index, chunk, *last) {
            Ok(plain) => {
                // Whatever opens is the chunk sealed at that position, unchanged.
                let i = usize::try_from(*index).expect("small index");
                assert!(i < n, "a chunk opened at a position past the stream");
                assert_eq!(
                    &plain[..],
                    genuine(i),
                    "a tampered chunk opened to other bytes"
                );
                out.extend_from_slice(&plain);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let result = result.and_then(|()| opener.finish());
    if changed {
        assert!(result.is_err(), "tampering (operation {op}) went unnoticed");
    } else {
        result.expect("an untouched stream opens");
        let from = (start * chunk_len).min(data.len());
        assert_eq!(out, &data[from..]);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    if r.u8() & 1 == 0 {
        arbitrary_chunks(r);
    } else {
        tampered(r);
    }
});
