//! Templates' dependency layers: what a build in the jail costs against the
//! same `pip install` run bare on the host, and what a cached layer adds to
//! a box's start. Both in the same run.
//!
//! The build is measured twice when the public index is reachable: from a
//! folder of wheels (no network; the air-gapped path) and from PyPI through
//! the egress proxy. The folder is filled by `pip download` on the host
//! (which only fetches files) or, when the index is unreachable, with small
//! wheels written here, and the report says which.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warden_jail::{BoxSpec, Jail, JailConfig, Status};
use warden_runtime::layers::{
    BuildLimits, LayerBuild, LayerMount, LayerPackage, LayerRuntime, PackageSource,
};
use warden_runtime::{Runner, RunnerConfig};

use crate::stats;

/// The packages built (and their dependencies).
const PACKAGES: [&str; 2] = ["six", "requests"];

/// A world-readable temporary directory (boxes run as other uids).
fn public_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir()?;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(d)
}

/// Whether `host:443` answers.
fn reachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// Where `host` resolves when that is not a public address (a registry
/// mirror in a reserved range, as on the benchmark machine): what the
/// operator of such a machine allows the proxy to reach.
fn operator_allows(host: &str) -> Vec<String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let public = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 2)
                || (o[0] == 198 && o[1] == 51 && o[2] == 100)
                || (o[0] == 203 && o[1] == 0 && o[2] == 113)
                || o[0] >= 224)
        }
        IpAddr::V6(_) => true,
    };
    (host, 443)
        .to_socket_addrs()
        .map(|a| {
            a.map(|a| a.ip())
                .filter(|ip| !public(ip))
                .map(|ip| format!("{ip}/32"))
                .collect()
        })
        .unwrap_or_default()
}

/// A small pure-Python wheel (the offline fallback).
fn wheel(dir: &Path, name: &str) -> anyhow::Result<()> {
    let file = std::fs::File::create(dir.join(format!("{name}-1.0.0-py3-none-any.whl")))?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    let info = format!("{name}-1.0.0.dist-info");
    let files = [
        (format!("{name}/__init__.py"), "VALUE = 1\n".to_owned()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: warden-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
    ];
    let mut record = String::new();
    for (p, body) in &files {
        zip.start_file(p.as_str(), opts)?;
        zip.write_all(body.as_bytes())?;
        record.push_str(&format!("{p},,\n"));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), opts)?;
    zip.write_all(record.as_bytes())?;
    zip.finish()?;
    Ok(())
}

/// Fill `dir` with the wheels of [`PACKAGES`]; returns the package names
/// to install and what the folder holds.
fn fill_folder(dir: &Path, online: bool) -> anyhow::Result<(Vec<String>, String)> {
    if online {
        let st = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "pip",
                "download",
                "-q",
                "--only-binary=:all:",
                "--no-cache-dir",
            ])
            .args(["--disable-pip-version-check", "-d"])
            .arg(dir)
            .args(PACKAGES)
            .env("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
            .status()
            .context("pip download")?;
        if st.success() {
            let n = std::fs::read_dir(dir)?.count();
            return Ok((
                PACKAGES.map(String::from).to_vec(),
                format!("{} and dependencies ({n} wheels from PyPI)", PACKAGES.join(", ")),
            ));
        }
        eprintln!("note: pip download failed; measuring synthetic wheels instead");
    }
    let names: Vec<String> = (0..6).map(|i| format!("wardenbench{i}")).collect();
    for n in &names {
        wheel(dir, n)?;
    }
    Ok((names, "6 small synthetic wheels (PyPI unreachable)".into()))
}

fn layer_packages(names: &[String]) -> Vec<LayerPackage> {
    names
        .iter()
        .map(|n| LayerPackage {
            name: n.clone(),
            version: None,
            hashes: vec![],
        })
        .collect()
}

/// One build in the jail, into a fresh directory under `root`.
fn jail_build(
    runner: &Runner,
    root: &Path,
    names: &[String],
    source: &PackageSource,
    n: usize,
) -> anyhow::Result<f64> {
    let dest = root.join(format!("jail-{n}"));
    let t = Instant::now();
    runner
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &layer_packages(names),
            source,
            dest: &dest,
            limits: BuildLimits {
                timeout: Duration::from_secs(600),
                ..BuildLimits::default()
            },
            progress: None,
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", e.log))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_dir_all(&dest).ok();
    Ok(ms)
}

/// The same install, bare on the host.
fn bare_build(root: &Path, names: &[String], folder: Option<&Path>, n: usize) -> anyhow::Result<f64> {
    let dest = root.join(format!("bare-{n}"));
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "-q",
        "--no-cache-dir",
        "--disable-pip-version-check",
    ])
    .args(["--no-compile", "--target"])
    .arg(&dest)
    .env("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    .env("PIP_ROOT_USER_ACTION", "ignore")
    .stdout(Stdio::null());
    if let Some(f) = folder {
        cmd.args(["--no-index", "--find-links"]).arg(f);
    }
    cmd.args(names);
    let t = Instant::now();
    let st = cmd.status().context("pip install")?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !st.success() {
        bail!("bare pip install failed: {st}");
    }
    std::fs::remove_dir_all(&dest).ok();
    Ok(ms)
}

fn build_rows(
    runner: &Runner,
    label: &str,
    names: &[String],
    source: &PackageSource,
    folder: Option<&Path>,
    builds: usize,
) -> anyhow::Result<()> {
    let root = public_dir()?;
    // One of each first: warms the page cache for both sides alike.
    jail_build(runner, root.path(), names, source, 0)?;
    bare_build(root.path(), names, folder, 0)?;
    let (mut jail, mut bare) = (Vec::new(), Vec::new());
    for i in 1..=builds {
        jail.push(jail_build(runner, root.path(), names, source, i)?);
        bare.push(bare_build(root.path(), names, folder, i)?);
    }
    let (j, b) = (stats::of(jail), stats::of(bare));
    println!(
        "| {label}: bare `pip install --target` on the host (baseline) | {:.0} | {:.0} | 1.00 |",
        b.median, b.p99
    );
    println!(
        "| {label}: layer build in the jail | {:.0} | {:.0} | {:.2} |",
        j.median,
        j.p99,
        j.median / b.median
    );
    Ok(())
}

/// A box's start, with or without the layer: `argv` run `runs` times per
/// variant, interleaved.
fn start_rows(
    jail: &Jail,
    layer: &LayerMount,
    label: &str,
    argv: &[&str],
    runs: usize,
) -> anyhow::Result<()> {
    let spec = |with: bool| {
        let mut s = BoxSpec::command(argv.iter().copied());
        if with {
            let (bind, (k, v)) = layer.bind_and_env();
            s.mounts.ro_binds.push(bind);
            s.env.push((k.into(), v.into()));
        }
        s
    };
    let mut out = [Vec::new(), Vec::new()];
    for i in 0..runs + 5 {
        for (v, with) in [false, true].into_iter().enumerate() {
            let s = spec(with);
            let t = Instant::now();
            let o = jail.run(s)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if o.status != Status::Ok {
                bail!("{argv:?} (layer: {with}): {} {:?}", o.status, o.message);
            }
            if i >= 5 {
                out[v].push(ms);
            }
        }
    }
    let [without, with] = out.map(stats::of);
    println!(
        "| {label}, no layer | {:.2} | {:.2} | |",
        without.median, without.p99
    );
    println!(
        "| {label}, cached layer bound | {:.2} | {:.2} | +{:.2} ms |",
        with.median,
        with.p99,
        with.median - without.median
    );
    Ok(())
}

pub fn run(builds: usize, runs: usize) -> anyhow::Result<()> {
    let online = reachable("pypi.org") && reachable("files.pythonhosted.org");
    if !online {
        eprintln!("\n*** pypi.org is unreachable: the index build is not measured ***\n");
    }
    let runner = Runner::new(Jail::new(JailConfig::default())?, RunnerConfig::default())?;
    println!("## Templates (dependency layers, {} CPUs)\n", stats::num_cpus());

    let folder = public_dir()?;
    let (names, what) = fill_folder(folder.path(), online)?;
    println!("Packages: {what}; {builds} builds per variant, interleaved.\n");
    println!("| measurement | p50 ms | p99 ms | ratio / delta |\n|---|---:|---:|---:|");
    build_rows(
        &runner,
        "from a folder",
        &names,
        &PackageSource::Folder(folder.path().to_path_buf()),
        Some(folder.path()),
        builds,
    )?;
    if online {
        let hosts = ["pypi.org", "files.pythonhosted.org"];
        build_rows(
            &runner,
            "from PyPI",
            &names,
            &PackageSource::Index {
                url: "https://pypi.org/simple".into(),
                hosts: hosts.map(String::from).to_vec(),
                allow_cidrs: hosts.iter().flat_map(|h| operator_allows(h)).collect(),
            },
            None,
            builds,
        )?;
    }

    // A cached layer in a box.
    let layers = public_dir()?;
    let dest: PathBuf = layers.path().join("layer");
    runner
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &layer_packages(&names),
            source: &PackageSource::Folder(folder.path().to_path_buf()),
            dest: &dest,
            limits: BuildLimits::default(),
            progress: None,
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", e.log))?;
    let layer = LayerMount {
        dir: dest,
        runtime: LayerRuntime::Python,
    };
    drop(runner);
    let jail = Jail::new(JailConfig::default())?;
    start_rows(&jail, &layer, "box start, `/bin/true`", &["/bin/true"], runs)?;
    start_rows(
        &jail,
        &layer,
        "box start, `python3 -S -c pass`",
        &["/usr/bin/python3", "-S", "-c", "pass"],
        runs,
    )?;
    Ok(())
}
