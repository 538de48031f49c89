//! `warden session` through the real binary against a real `warden serve`:
//! create, exec with its output streamed live and its exit code passed on
//! (script, shell, a stateful cell), files copied both ways, listed and
//! removed, the sessions listed, terminate; and the server's problems
//! printed with their exit classes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::sessions::shop;
use super::{Serve, client, warden};

/// `warden session ARGS` as the app `key`; its output.
fn session(s: &Serve, key: &str, args: &[&str]) -> Output {
    warden()
        .arg("session")
        .args(args)
        .args(["--server", &s.base])
        .env("WARDEN_API_KEY", key)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_command_runs_code_moves_files_and_ends_sessions() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let key = shop(&s, &client()).await;

    let o = session(&s, &key, &["create", "-e", "GREETING=hi", "--memory-mb", "256"]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_owned();
    assert!(id.starts_with("ses_"), "the id alone on stdout: {id:?}");

    // Output arrives while the code still runs; the exit code is the code's.
    let mut child = warden()
        .args(["session", "exec", &id, "--server", &s.base])
        .arg("import os, sys, time\nprint('first', os.environ['GREETING'], flush=True)\ntime.sleep(3)\nprint('second')\nsys.exit(7)")
        .env("WARDEN_API_KEY", &key)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "first hi\n");
    assert!(
        child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(3),
        "the first line came before the code ended"
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "second\n");
    assert_eq!(status.code(), Some(7));

    // stderr goes to stderr; the language from the flag.
    let o = session(&s, &key, &["exec", &id, "-l", "shell", "echo out; echo oops >&2"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "out\n");
    assert!(err(&o).contains("oops"), "{}", err(&o));

    // A stateful cell keeps its variables; its value is printed.
    let o = session(&s, &key, &["exec", &id, "-m", "repl", "x = 21"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = session(&s, &key, &["exec", &id, "-m", "repl", "x * 2"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "42");

    // A failing handler: its error on stderr, exit 1.
    let o = session(
        &s,
        &key,
        &[
            "exec",
            &id,
            "-m",
            "handler",
            "--event",
            "{\"a\": 1}",
            "def handler(e):\n    raise ValueError('bad a')",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("bad a"), "{}", err(&o));

    // Files both ways.
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("in.txt");
    std::fs::write(&src, b"line one\nline two\n").unwrap();
    let remote = format!("{id}:/workspace/data/in.txt");
    let o = session(&s, &key, &["cp", src.to_str().unwrap(), &remote]);
    assert!(o.status.success(), "{}", err(&o));
    let o = session(
        &s,
        &key,
        &["exec", &id, "print(open('data/in.txt').read().count('line'))"],
    );
    assert_eq!(out(&o), "2\n", "{}", err(&o));
    let o = session(&s, &key, &["ls", &id, "data"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("file") && out(&o).contains("18  ") && out(&o).contains("in.txt"),
        "{}",
        out(&o)
    );
    let back = local.path().join("back.txt");
    let o = session(&s, &key, &["cp", &remote, back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read(&back).unwrap(), b"line one\nline two\n");
    // Into a folder: the file keeps its name.
    let into = local.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let o = session(
        &s,
        &key,
        &["cp", &format!("{id}:data/in.txt"), into.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(into.join("in.txt").is_file());
    let o = session(&s, &key, &["cp", src.to_str().unwrap(), &format!("{id}:up/")]);
    assert!(o.status.success(), "{}", err(&o));
    let o = session(&s, &key, &["ls", &id, "/workspace/up"]);
    assert!(out(&o).contains("in.txt"), "{}", out(&o));

    // Remove; removing again is "not found", the server's words printed.
    let o = session(&s, &key, &["rm", &id, "data/in.txt"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = session(&s, &key, &["ls", &id, "data"]);
    assert!(!out(&o).contains("in.txt"), "{}", out(&o));
    let o = session(&s, &key, &["rm", &id, "data/in.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    // `..` is refused before a request is sent, the reason said, exit 3.
    let o = session(
        &s,
        &key,
        &["cp", &format!("{id}:../etc/passwd"), back.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("`..` name is not allowed"), "{}", err(&o));
    // One the server refuses: its reason, exit 3.
    let o = session(
        &s,
        &key,
        &["cp", &format!("{id}:a\u{1}b"), back.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("path"), "{}", err(&o));
    // Neither side a session: usage.
    let o = session(&s, &key, &["cp", src.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));

    // Listed, then terminated; code after that is refused (409, exit 3).
    let o = session(&s, &key, &["list"]);
    let listed = out(&o);
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{listed}"
    );
    let o = session(&s, &key, &["terminate", &id]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), format!("{id} terminated"));
    let o = session(&s, &key, &["exec", &id, "print(1)"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("terminated"), "{}", err(&o));
    let o = session(&s, &key, &["list", "--status", "terminated", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v[0]["id"], id.as_str());

    // Bad input: the problem's located errors, exit 3; unknown session, 1.
    let o = session(
        &s,
        &key,
        &["create", "--template", "no-such", "-p", "x; rm -rf /"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains("/template") && err(&o).contains("no template"),
        "{}",
        err(&o)
    );
    let o = session(&s, &key, &["exec", "ses_00000000000000000000000000", "print(1)"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = session(&s, "wk_not_a_key", &["list"]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_copy_both_ways_and_links_from_the_box_are_not_followed() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let key = shop(&s, &client()).await;
    let o = session(&s, &key, &["create"]);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_owned();

    // A local tree: nested files, an empty folder, and a link (skipped).
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    std::fs::write(tree.join("top.txt"), b"top").unwrap();
    std::fs::write(tree.join("a/b/deep.bin"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tree.join("a/host")).unwrap();
    // Into the workspace: the folder keeps its name.
    let o = session(&s, &key, &["cp", tree.to_str().unwrap(), &format!("{id}:")]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("2 files"), "{}", err(&o));
    assert!(
        err(&o).contains("1 links or special files were not copied"),
        "{}",
        err(&o)
    );
    let o = session(
        &s,
        &key,
        &[
            "exec",
            &id,
            "import os\nprint(open('tree/top.txt').read(), len(open('tree/a/b/deep.bin','rb').read()), os.path.isdir('tree/empty'), os.path.lexists('tree/a/host'))",
        ],
    );
    assert_eq!(out(&o), "top 100000 True False\n", "{}", err(&o));
    // Under another name.
    let o = session(&s, &key, &["cp", tree.to_str().unwrap(), &format!("{id}:copy")]);
    assert!(o.status.success(), "{}", err(&o));
    let o = session(&s, &key, &["exec", &id, "print(open('copy/top.txt').read())"]);
    assert_eq!(out(&o), "top\n", "{}", err(&o));

    // The box plants a link to a host folder and a FIFO in the folder; the
    // download skips both and writes only inside the new local folder.
    let o = session(
        &s,
        &key,
        &[
            "exec",
            &id,
            "import os\nos.symlink('/etc', 'tree/a/evil')\nos.mkfifo('tree/pipe')\nprint('planted')",
        ],
    );
    assert_eq!(out(&o), "planted\n", "{}", err(&o));
    let back = local.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let o = session(&s, &key, &["cp", &format!("{id}:tree"), back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let got = back.join("tree");
    assert_eq!(std::fs::read(got.join("top.txt")).unwrap(), b"top");
    assert_eq!(
        std::fs::read(got.join("a/b/deep.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert!(got.join("empty").is_dir());
    assert!(
        got.join("a/evil").symlink_metadata().is_err(),
        "a link was not made"
    );
    assert!(
        got.join("pipe").symlink_metadata().is_err(),
        "a FIFO was not made"
    );
    assert!(err(&o).contains("2 links, special files"), "{}", err(&o));
    // Copying onto a folder that exists is refused, nothing written.
    let o = session(&s, &key, &["cp", &format!("{id}:tree"), back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("exists"), "{}", err(&o));
    // A folder that is not there: the server's answer.
    let o = session(
        &s,
        &key,
        &["cp", &format!("{id}:nothing"), back.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}
