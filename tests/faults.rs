//! End to end: faults the user should barely notice. A server killed and restarted in the
//! middle of a large put is rejoined within seconds (its stateless reset key survives the
//! restart, so the client learns at once that the old connection is gone) and the put
//! finishes intact.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_e2e::{Client, TestServer};

/// A file of `mib` MiB whose every MiB differs.
fn write_big(path: &Path, mib: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        file.write_all(&block).expect("write");
    }
    file.flush().expect("flush");
}

/// The bytes of every upload in progress on the server, and the largest one's.
fn partial_bytes(server: &TestServer) -> (u64, u64) {
    let lens: Vec<u64> = std::fs::read_dir(server.data_dir().join("blobs").join("partial"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| Some(e.metadata().ok()?.len()))
                .collect()
        })
        .unwrap_or_default();
    (lens.iter().sum(), lens.iter().copied().max().unwrap_or(0))
}

#[test]
fn a_server_killed_and_restarted_during_a_put_is_rejoined_within_seconds() {
    let mut server = TestServer::start_with("[files]\nblob_grace_s = 0\n");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let big = alice.dir.path().join("big.bin");
    write_big(&big, 200);
    let big_str = big.to_str().expect("utf-8");

    let mut rejoined = Vec::new();
    for round in 0..10 {
        let remote = format!("/big{round}.bin");
        let put = alice.spawn_piped(&["put", big_str, &remote]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while partial_bytes(&server).1 < 20 << 20 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the upload never got going"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server.kill_hard();
        server.restart(|_| {});
        let restarted = Instant::now();
        let before = partial_bytes(&server).0;
        let deadline = restarted + Duration::from_secs(90);
        while partial_bytes(&server).0 <= before {
            if Instant::now() > deadline {
                let out = put.wait_with_output().expect("wait for put");
                panic!(
                    "round {round}: no byte arrived within 90 s of the restart; the client said: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        rejoined.push(restarted.elapsed());
        let out = put.wait_with_output().expect("wait for put");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {stderr}");
        assert!(
            stderr.contains("the connection was lost") && !stderr.contains("timed out"),
            "round {round}: the client says what happened: {stderr}"
        );
        if round == 0 {
            let back = alice.dir.path().join("back.bin");
            alice
                .run(&["get", &remote, back.to_str().expect("utf-8")])
                .ok();
            assert!(
                std::fs::read(&back).expect("read") == std::fs::read(&big).expect("read"),
                "the file came back intact"
            );
            std::fs::remove_file(&back).expect("remove");
        }
        alice.run(&["rm", &remote]).ok();
        alice.run(&["trash", "empty", "--yes"]).ok();
        server.admin(&["gc"]).ok();
    }
    rejoined.sort();
    let median = rejoined[rejoined.len() / 2];
    println!("rejoined after the restart: {rejoined:?}, median {median:?}");
    assert!(median <= Duration::from_secs(3), "{rejoined:?}");
}
