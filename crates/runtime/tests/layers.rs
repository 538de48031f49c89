//! Dependency layers built in real boxes: from a folder of wheels and
//! tarballs with no network at all (always run), and from the public
//! indexes through the egress proxy (skipped, loudly, when they cannot be
//! reached). Boxes then import what the layer holds, read-only. Needs root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use warden_jail::{Jail, JailConfig};
use warden_runtime::layers::{
    BuildLimits, LayerBuild, LayerMount, LayerPackage, LayerRuntime, PackageSource,
};
use warden_runtime::session::{ExecMode, Language, SessionExec, SessionSpec};
use warden_runtime::{CallLimits, CallStatus, Runner, RunnerConfig};

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "layer tests need root (the jail); run them through scripts/test"
        );
        Runner::new(
            Jail::new(JailConfig::default()).expect("jail"),
            RunnerConfig::default(),
        )
        .expect("runner")
    })
}

/// A world-readable temporary directory (boxes run as other uids).
fn public_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A minimal pure-Python wheel, written by hand: a zip with the module and
/// its dist-info.
fn wheel(dir: &Path, name: &str, version: &str, module: &str) -> PathBuf {
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    let info = format!("{name}-{version}.dist-info");
    let files = [
        (format!("{name}/__init__.py"), module.to_owned()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: warden-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
        (format!("{info}/top_level.txt"), format!("{name}\n")),
    ];
    let mut record = String::new();
    for (p, body) in &files {
        zip.start_file(p.as_str(), opts).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
        record.push_str(&format!("{p},,\n"));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), opts).unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
    path
}

/// An npm package tarball, as `npm pack` names and lays it out.
fn tarball(dir: &Path, name: &str, version: &str, index_js: &str) {
    let src = tempfile::tempdir().unwrap();
    let pkg = src.path().join("package");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        format!(r#"{{"name":"{name}","version":"{version}","main":"index.js"}}"#),
    )
    .unwrap();
    std::fs::write(pkg.join("index.js"), index_js).unwrap();
    let out = dir.join(format!("{name}-{version}.tgz"));
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(src.path())
        .arg("package")
        .status()
        .unwrap();
    assert!(st.success());
}

fn pkg(name: &str, version: Option<&str>) -> LayerPackage {
    LayerPackage {
        name: name.into(),
        version: version.map(String::from),
        hashes: vec![],
    }
}

fn limits() -> BuildLimits {
    BuildLimits {
        timeout: Duration::from_secs(300),
        ..BuildLimits::default()
    }
}

/// Run `code` in a session with `layer`, returning stdout.
fn run_with(layer: &LayerMount, language: Language, code: &str) -> (CallStatus, String, String) {
    let s = runner()
        .start_session(SessionSpec {
            layer: Some(layer.clone()),
            ..SessionSpec::default()
        })
        .unwrap();
    let o = s
        .exec(&SessionExec {
            language,
            mode: ExecMode::Script,
            code: code.as_bytes().to_vec(),
            event: vec![],
            limits: CallLimits::default(),
            env: vec![],
            tap: None,
        })
        .unwrap();
    (o.result.status, o.result.stdout, o.result.stderr)
}

#[test]
fn a_python_layer_builds_from_a_folder_with_no_network_and_is_read_only() {
    let index = public_dir();
    wheel(
        index.path(),
        "tinyhello",
        "1.0.0",
        "def hi():\n    return 'hi from the layer'\n",
    );
    wheel(
        index.path(),
        "tinyhello",
        "2.0.0",
        "def hi():\n    return 'version two'\n",
    );
    let layers = public_dir();
    let dest = layers.path().join("L1");
    let built = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("tinyhello", Some("==1.0.0"))],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    assert_eq!(built.lock.len(), 1, "{:?}", built.lock);
    assert_eq!(
        (built.lock[0].name.as_str(), built.lock[0].version.as_str()),
        ("tinyhello", "1.0.0")
    );
    assert!(
        built.lock[0].sha256.as_deref().is_some_and(|h| h.len() == 64),
        "{:?}",
        built.lock
    );
    let layer = LayerMount {
        dir: dest.clone(),
        runtime: LayerRuntime::Python,
    };
    let (st, out, err) = run_with(
        &layer,
        Language::Python,
        "import tinyhello, os\nprint(tinyhello.hi())\ntry:\n    open(os.path.dirname(tinyhello.__file__) + '/x', 'w')\nexcept OSError as e:\n    print(type(e).__name__)",
    );
    assert_eq!(st, CallStatus::Success, "{err}");
    assert_eq!(
        out, "hi from the layer\nOSError\n",
        "the layer is read-only: {out}"
    );
    // A version that does not exist: a failed build naming the package, and
    // nothing at the destination.
    let dest2 = layers.path().join("L2");
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("tinyhello", Some("==9.9.9"))],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest2,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert_eq!(e.package.as_deref(), Some("tinyhello"), "{e}\n{}", e.log);
    assert!(!dest2.exists(), "half a layer is visible");
    // A package the folder lacks.
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("not-in-the-folder", None)],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest2,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert_eq!(e.package.as_deref(), Some("not-in-the-folder"), "{e}");
    // A pinned hash that does not match.
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[LayerPackage {
                hashes: vec![format!("sha256:{}", "0".repeat(64))],
                ..pkg("tinyhello", Some("==1.0.0"))
            }],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest2,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert!(e.message.contains("hash"), "{e}\n{}", e.log);
    assert!(!dest2.exists());
}

#[test]
fn a_node_layer_builds_from_a_folder_of_tarballs() {
    let index = public_dir();
    tarball(
        index.path(),
        "tiny-greet",
        "1.2.0",
        "exports.greet = (n) => `hello ${n}`;\n",
    );
    let layers = public_dir();
    let dest = layers.path().join("N1");
    let built = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Node,
            packages: &[pkg("tiny-greet", Some("^1"))],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    assert!(
        built
            .lock
            .iter()
            .any(|l| l.name == "tiny-greet" && l.version == "1.2.0"),
        "{:?}",
        built.lock
    );
    let layer = LayerMount {
        dir: dest,
        runtime: LayerRuntime::Node,
    };
    let (st, out, err) = run_with(
        &layer,
        Language::Javascript,
        "console.log(require('tiny-greet').greet('box'))",
    );
    assert_eq!(st, CallStatus::Success, "{err}");
    assert_eq!(out, "hello box\n");
}

/// What an operator of this machine allows the proxy to reach although it
/// is not a public address: where `host` resolves, when it does not resolve
/// to a public one (machines behind a registry mirror, like this one, whose
/// package hosts resolve into a reserved range).
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
    let addrs: Vec<IpAddr> = (host, 443)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    let allow: Vec<String> = addrs
        .iter()
        .filter(|ip| !public(ip))
        .map(|ip| format!("{ip}/32"))
        .collect();
    if !allow.is_empty() {
        eprintln!(
            "note: {host} resolves to {allow:?} here; the test allows exactly that, as this machine's operator would"
        );
    }
    allow
}

/// The public index, or a loud skip.
fn reachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let ok = (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: {host}:443 is unreachable from this machine; the public-index build is not tested ***\n"
        );
    }
    ok
}

#[test]
fn a_python_layer_builds_from_pypi_through_the_proxy() {
    if !reachable("pypi.org") {
        return;
    }
    let layers = public_dir();
    let dest = layers.path().join("P1");
    let built = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("six", Some("==1.16.0")), pkg("requests", None)],
            source: &PackageSource::Index {
                url: "https://pypi.org/simple".into(),
                hosts: vec!["pypi.org".into(), "files.pythonhosted.org".into()],
                allow_cidrs: [
                    operator_allows("pypi.org"),
                    operator_allows("files.pythonhosted.org"),
                ]
                .concat(),
            },
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    let names: Vec<&str> = built.lock.iter().map(|l| l.name.as_str()).collect();
    for want in [
        "six",
        "requests",
        "urllib3",
        "idna",
        "certifi",
        "charset-normalizer",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        built.log.contains("egress: CONNECT pypi.org:443 allowed"),
        "{}",
        built.log
    );
    let layer = LayerMount {
        dir: dest,
        runtime: LayerRuntime::Python,
    };
    let (st, out, err) = run_with(
        &layer,
        Language::Python,
        "import six, requests\nprint(six.__version__, requests.__name__)",
    );
    assert_eq!(st, CallStatus::Success, "{err}");
    assert_eq!(out, "1.16.0 requests\n");
    // A package that does not exist on the index: a clear failure.
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("warden-no-such-package-xyzzy", None)],
            source: &PackageSource::Index {
                url: "https://pypi.org/simple".into(),
                hosts: vec!["pypi.org".into(), "files.pythonhosted.org".into()],
                allow_cidrs: [
                    operator_allows("pypi.org"),
                    operator_allows("files.pythonhosted.org"),
                ]
                .concat(),
            },
            dest: &layers.path().join("P2"),
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert_eq!(
        e.package.as_deref(),
        Some("warden-no-such-package-xyzzy"),
        "{e}\n{}",
        e.log
    );
}

#[test]
fn a_node_layer_builds_from_the_npm_registry_through_the_proxy() {
    if !reachable("registry.npmjs.org") {
        return;
    }
    let layers = public_dir();
    let dest = layers.path().join("M1");
    let built = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Node,
            packages: &[pkg("is-number", Some("7.0.0"))],
            source: &PackageSource::Index {
                url: "https://registry.npmjs.org/".into(),
                hosts: vec!["registry.npmjs.org".into()],
                allow_cidrs: operator_allows("registry.npmjs.org"),
            },
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    assert!(
        built
            .lock
            .iter()
            .any(|l| l.name == "is-number" && l.integrity.is_some()),
        "{:?}",
        built.lock
    );
    let layer = LayerMount {
        dir: dest,
        runtime: LayerRuntime::Node,
    };
    let (st, out, err) = run_with(
        &layer,
        Language::Javascript,
        "console.log(require('is-number')(5))",
    );
    assert_eq!(st, CallStatus::Success, "{err}");
    assert_eq!(out, "true\n");
}

/// An sdist whose build script (an in-tree PEP 517 backend, so pip needs
/// nothing from an index to run it) fails.
fn failing_sdist(dir: &Path, name: &str) {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join(format!("{name}-1.0"));
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("backend.py"),
        "def _fail(*a, **k):\n    raise SystemExit('warden-test: this build script fails on purpose')\n\
         get_requires_for_build_wheel = prepare_metadata_for_build_wheel = build_wheel = build_sdist = _fail\n",
    )
    .unwrap();
    std::fs::write(
        root.join("PKG-INFO"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"),
    )
    .unwrap();
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(dir.join(format!("{name}-1.0.tar.gz")))
        .arg("-C")
        .arg(src.path())
        .arg(format!("{name}-1.0"))
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn an_install_script_that_fails_names_its_package_and_leaves_nothing() {
    let index = public_dir();
    failing_sdist(index.path(), "badbuild");
    wheel(index.path(), "tinyhello", "1.0.0", "X = 1\n");
    let layers = public_dir();
    let dest = layers.path().join("F1");
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("tinyhello", None), pkg("badbuild", None)],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert_eq!(e.package.as_deref(), Some("badbuild"), "{e}\n{}", e.log);
    assert!(e.message.contains("script failed"), "{e}");
    assert!(e.log.contains("this build script fails on purpose"), "{}", e.log);
    assert!(!dest.exists(), "half a layer is visible");

    // npm: an install script that exits non-zero.
    let src = tempfile::tempdir().unwrap();
    let pkg_dir = src.path().join("package");
    std::fs::create_dir(&pkg_dir).unwrap();
    std::fs::write(
        pkg_dir.join("package.json"),
        r#"{"name":"bad-install","version":"1.0.0","scripts":{"install":"echo warden-test: install fails on purpose >&2; exit 3"}}"#,
    )
    .unwrap();
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(index.path().join("bad-install-1.0.0.tgz"))
        .arg("-C")
        .arg(src.path())
        .arg("package")
        .status()
        .unwrap();
    assert!(st.success());
    let dest = layers.path().join("F2");
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Node,
            packages: &[pkg("bad-install", Some("1.0.0"))],
            source: &PackageSource::Folder(index.path().to_owned()),
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert_eq!(e.package.as_deref(), Some("bad-install"), "{e}\n{}", e.log);
    assert!(!dest.exists(), "half a layer is visible");
}

#[test]
fn an_index_that_is_down_or_silent_fails_the_build_clearly() {
    let layers = public_dir();
    // Down: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let source = |port: u16| PackageSource::Index {
        url: format!("https://127.0.0.1:{port}/simple"),
        hosts: vec![format!("127.0.0.1:{port}")],
        // The test's own loopback index, allowed as an operator would.
        allow_cidrs: vec!["127.0.0.1/32".into()],
    };
    let dest = layers.path().join("D1");
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("six", None)],
            source: &source(port),
            dest: &dest,
            limits: limits(),
            progress: None,
        })
        .unwrap_err();
    assert!(
        e.message.contains("could not be reached") || e.message.contains("no version matches"),
        "{e}\n{}",
        e.log
    );
    assert!(e.log.contains("egress: CONNECT 127.0.0.1"), "{}", e.log);
    assert!(!dest.exists());

    // Silent: it accepts and never answers. The build's own clock ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        silent.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < end {
            if let Ok((c, _)) = silent.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let dest = layers.path().join("D2");
    let e = runner()
        .build_layer(LayerBuild {
            runtime: LayerRuntime::Python,
            packages: &[pkg("six", None)],
            source: &source(port),
            dest: &dest,
            limits: BuildLimits {
                timeout: Duration::from_secs(15),
                ..BuildLimits::default()
            },
            progress: None,
        })
        .unwrap_err();
    assert!(
        e.message.contains("time limit") || e.message.contains("could not be reached"),
        "{e}\n{}",
        e.log
    );
    assert!(!dest.exists());
    drop(held);
}
