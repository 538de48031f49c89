//! Session snapshots, measured as the server takes them: a workspace of
//! `mib` MiB (1 MiB files of random bytes, plus a thousand small ones)
//! packed from a live session box (`BoxDir::pack_tar`) through a scratch
//! file into the object store, and restored into a new session box;
//! beside the host's own `tar` of the same files to and from the same
//! object store, in the same run. The object store is the S3-compatible
//! server named by `WARDEN_TEST_S3_*` (`eval "$(scripts/s3)"` starts one),
//! else a local folder (said so in the output).
//!
//! Also the part of a failover that is not configuration: a new box with a
//! snapshot restored (a node's death is noticed after
//! `cluster.dead_after_secs`, at the next heartbeat of another node).

use std::io::{BufReader, BufWriter, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use warden_jail::{CopyLimits, MIB};
use warden_runtime::Runner;
use warden_runtime::session::{SessionBox, SessionSpec};
use warden_store::{ObjectBlobs, S3Options};

use crate::stats;

fn limits(bytes: u64) -> CopyLimits {
    CopyLimits {
        entries: 200_000,
        bytes,
        depth: 64,
    }
}

/// The object store: S3 from the environment, else a folder.
fn object_store(folder: &Path) -> anyhow::Result<(ObjectBlobs, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match var("WARDEN_TEST_S3_ENDPOINT") {
        Some(endpoint) => {
            let bucket = var("WARDEN_TEST_S3_BUCKET").unwrap_or_else(|| "warden".into());
            let o = S3Options {
                url: format!("s3://{bucket}/bench-{}", std::process::id()),
                endpoint: Some(endpoint.clone()),
                access_key_id: var("WARDEN_TEST_S3_KEY_ID"),
                secret_access_key: var("WARDEN_TEST_S3_SECRET"),
                region: "us-east-1".into(),
                allow_http: true,
                virtual_hosted: false,
                timeout: std::time::Duration::from_secs(60),
                retries: 3,
            };
            Ok((
                ObjectBlobs::s3(&o)?,
                format!("S3-compatible server at {endpoint}"),
            ))
        }
        None => Ok((
            ObjectBlobs::local(folder)?,
            "a local folder (set WARDEN_TEST_S3_* for an S3-compatible server)".into(),
        )),
    }
}

/// Deterministic noise (xorshift), so the files do not compress.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The workspace's files, on the host: `mib` files of 1 MiB, 1,000 small.
fn make_files(dir: &Path, mib: usize) -> anyhow::Result<u64> {
    let mut total = 0;
    std::fs::create_dir_all(dir.join("big"))?;
    std::fs::create_dir_all(dir.join("src/pkg"))?;
    for i in 0..mib {
        let data = noise(i as u64 + 1, MIB as usize);
        total += data.len() as u64;
        std::fs::write(dir.join(format!("big/{i}.bin")), data)?;
    }
    for i in 0..1000 {
        let data = format!("# module {i}\nVALUE = {i}\n");
        total += data.len() as u64;
        std::fs::write(dir.join(format!("src/pkg/m{i}.py")), data)?;
    }
    Ok(total)
}

fn session(runner: &Runner, disk_mib: u64) -> anyhow::Result<SessionBox> {
    Ok(runner.start_session(SessionSpec {
        disk_bytes: disk_mib * MIB,
        ..SessionSpec::default()
    })?)
}

/// Copy the host tree `src` into the session's workspace.
fn fill(s: &SessionBox, src: &Path) -> anyhow::Result<()> {
    let ws = s.workspace();
    for sub in ["big", "src", "src/pkg"] {
        ws.ensure_dir(Path::new(sub), 0o755)?;
    }
    for dir in ["big", "src/pkg"] {
        for e in std::fs::read_dir(src.join(dir))? {
            let e = e?;
            let rel = Path::new(dir).join(e.file_name());
            ws.write_file(&rel, &mut std::fs::File::open(e.path())?, u64::MAX - 1)?;
        }
    }
    Ok(())
}

fn mib_per_s(bytes: u64, ms: f64) -> f64 {
    bytes as f64 / MIB as f64 / (ms / 1000.0)
}

pub fn run(runner: &Runner, mib: usize, runs: usize) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let (blobs, store_name) = object_store(&scratch.path().join("objects"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(blobs.probe())
        .context("the object store does not answer")?;
    let host = scratch.path().join("files");
    let bytes = make_files(&host, mib)?;
    let disk = mib as u64 * 2 + 64;
    let live = session(runner, disk)?;
    fill(&live, &host)?;
    println!(
        "\n## Snapshots: a {:.0} MiB workspace ({} files) to and from {store_name}\n",
        bytes as f64 / MIB as f64,
        mib + 1000
    );

    let (mut snap, mut restore, mut tar_up, mut tar_down, mut resume) =
        (vec![], vec![], vec![], vec![], vec![]);
    let archive = scratch.path().join("snap.tar");
    for i in 0..runs {
        // Warden: pack from the live box, upload.
        let key = format!("snapshots/bench/{i}.tar");
        let t = Instant::now();
        {
            let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&archive)?);
            live.workspace().pack_tar(&mut out, limits(disk * MIB))?;
            out.flush()?;
        }
        rt.block_on(blobs.put_file(&key, &archive))?;
        snap.push(t.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_file(&archive)?;

        // Warden: download, unpack into a new session's workspace (the box
        // start is measured with it below, as a resume).
        let fresh = session(runner, disk)?;
        let t = Instant::now();
        if !rt.block_on(blobs.get_to_file(&key, &archive))? {
            bail!("the snapshot's object is missing");
        }
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&archive)?);
        let r = fresh.workspace().unpack_tar(&mut input, limits(disk * MIB))?;
        restore.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.bytes != bytes {
            bail!("restored {} bytes of {bytes}", r.bytes);
        }
        fresh.terminate();
        std::fs::remove_file(&archive)?;

        // A resume: a new box, then the same restore.
        let t = Instant::now();
        let again = session(runner, disk)?;
        rt.block_on(blobs.get_to_file(&key, &archive))?;
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&archive)?);
        again.workspace().unpack_tar(&mut input, limits(disk * MIB))?;
        resume.push(t.elapsed().as_secs_f64() * 1000.0);
        again.terminate();
        std::fs::remove_file(&archive)?;
        rt.block_on(blobs.delete(&key))?;

        // The host's tar of the same files, to and from the same store.
        let key = format!("snapshots/bench/tar-{i}.tar");
        let t = Instant::now();
        let st = Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&host)
            .arg(".")
            .status()?;
        if !st.success() {
            bail!("tar -c failed");
        }
        rt.block_on(blobs.put_file(&key, &archive))?;
        tar_up.push(t.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_file(&archive)?;
        let out = scratch.path().join(format!("untar-{i}"));
        std::fs::create_dir(&out)?;
        let t = Instant::now();
        rt.block_on(blobs.get_to_file(&key, &archive))?;
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&out)
            .status()?;
        if !st.success() {
            bail!("tar -x failed");
        }
        tar_down.push(t.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_file(&archive)?;
        std::fs::remove_dir_all(&out)?;
        rt.block_on(blobs.delete(&key))?;
    }
    live.terminate();

    let (s, r, tu, td, re) = (
        stats::of(snap),
        stats::of(restore),
        stats::of(tar_up),
        stats::of(tar_down),
        stats::of(resume),
    );
    println!("| {runs} runs | p50 ms | p99 ms | MiB/s (p50) | vs host tar (p50) |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, x: &stats::Stats, base: Option<&stats::Stats>| {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} |",
            x.median,
            x.p99,
            mib_per_s(bytes, x.median),
            base.map_or("—".to_owned(), |b| format!("{:.2}×", x.median / b.median))
        );
    };
    row("snapshot (pack a live box, upload)", &s, Some(&tu));
    row("host `tar -c` + upload", &tu, None);
    row("restore (download, unpack into a box)", &r, Some(&td));
    row("download + host `tar -x`", &td, None);
    row("resume (new box + restore)", &re, None);
    println!(
        "\nFailover = the dead node noticed (`cluster.dead_after_secs`, 30 s by default, plus up to one `cluster.heartbeat_secs`) + the resume above."
    );
    Ok(())
}
