//! Crash safety: a child process writes and acknowledges transactions, the test kills it
//! with SIGKILL, and every acknowledged write must be in the file when it is reopened.
//!
//! The child is this same test binary running the ignored `crash_child` test, pointed at the
//! database by an environment variable.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

const DB_ENV: &str = "FIBERLB_STORE_CRASH_CHILD_DB";
/// Acknowledgements to wait for before the kill.
const ACKS_BEFORE_KILL: u64 = 30;
/// The child stops on its own after this many writes, should the parent be gone.
const CHILD_MAX_WRITES: u64 = 5_000;

#[test]
#[ignore = "helper process of acknowledged_writes_survive_kill_9; does nothing when run alone"]
fn crash_child() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(Path::new(&path)).unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0..CHILD_MAX_WRITES {
            let rev = store
                .txn(Txn::new().then(Op::put(format!("crash/{i:06}"), i.to_string().into_bytes())))
                .await
                .unwrap();
            writeln!(out, "ack {i} {rev}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::embedded::crash_tests::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ack) = line.strip_prefix("ack ") {
                let mut parts = ack.split(' ').map(|p| p.parse::<u64>().unwrap());
                if tx
                    .send((parts.next().unwrap(), parts.next().unwrap()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let mut last = None;
    for _ in 0..ACKS_BEFORE_KILL {
        last = Some(
            rx.recv_timeout(Duration::from_secs(30))
                .expect("child acknowledges writes"),
        );
    }
    // std's kill() is SIGKILL on Unix: no destructor, no flush, no clean close of the file.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Acks the child printed before it died count too.
    let (last_key, last_rev) = rx.try_iter().last().or(last).unwrap();

    let store = EmbeddedStore::open(&path).expect("reopens after kill -9");
    let revision = store.revision().await.unwrap();
    assert!(
        revision >= last_rev,
        "revision {revision} < acknowledged {last_rev}"
    );
    let kept = store.range("crash/").await.unwrap();
    assert!(
        kept.len() as u64 > last_key,
        "{} keys kept, key {last_key} was acknowledged",
        kept.len()
    );
    for (i, kv) in kept.iter().enumerate() {
        assert_eq!(kv.key, format!("crash/{i:06}"));
        assert_eq!(kv.value, i.to_string().into_bytes());
        assert_eq!(kv.mod_revision, i as u64 + 1);
    }
}
