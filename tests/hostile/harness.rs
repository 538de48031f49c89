//! Running `warden run --json` on fixtures, and looking at the host.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The binary under test.
pub fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

/// `tests/hostile/fixtures`, as an absolute path.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/hostile/fixtures")
        .canonicalize()
        .expect("fixtures directory")
}

/// Panic unless root: every hostile test needs the real jail.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "hostile tests must run as root (the rootless test switches user itself); run them through `.ci/run` or `sudo`"
    );
}

/// One finished `warden run --json`.
#[derive(Debug)]
pub struct Run {
    /// The JSON result.
    pub json: Value,
    /// Exit code of `warden`.
    pub code: i32,
    /// Warden's own stderr (diagnostics, not the program's).
    pub warden_stderr: String,
}

impl Run {
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("<none>")
    }
    pub fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap_or("")
    }
    pub fn stderr(&self) -> &str {
        self.json["stderr"].as_str().unwrap_or("")
    }
    /// The program's stdout parsed as JSON.
    pub fn out_json(&self) -> Value {
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("program output is not JSON ({e}): {self:#?}"))
    }
    pub fn violation(&self) -> Option<&str> {
        self.json["violation"]["syscall"].as_str()
    }
    pub fn uid(&self) -> u32 {
        self.json["sandbox"]["uid"].as_u64().unwrap_or(0) as u32
    }
    pub fn wall_ms(&self) -> f64 {
        self.json["wall_ms"].as_f64().unwrap_or(f64::MAX)
    }
}

/// Builder for a `warden run --json` invocation.
pub struct Warden {
    opts: Vec<OsString>,
    env: Vec<(String, String)>,
}

/// Start building a run with the fixtures bound at `/fixtures`.
pub fn warden() -> Warden {
    let mut w = Warden {
        opts: vec!["run".into(), "--json".into()],
        env: Vec::new(),
    };
    w.opts.push("--ro-bind".into());
    w.opts.push(format!("{}:/fixtures", fixtures().display()).into());
    w
}

impl Warden {
    pub fn opt(mut self, o: &str) -> Self {
        self.opts.push(o.into());
        self
    }
    pub fn opts(mut self, os: &[&str]) -> Self {
        self.opts.extend(os.iter().map(OsString::from));
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Bind the compiled C fixtures at `/cbin`.
    pub fn with_c_fixtures(self) -> Self {
        let dir = c_fixtures();
        self.opt("--ro-bind").opt(&format!("{}:/cbin", dir.display()))
    }
    /// Give this run its own uid range, so checks for leftover processes by
    /// uid cannot see another test's boxes.
    pub fn private_uids(self) -> (Self, std::ops::Range<u32>) {
        let base = next_uid_base();
        (self.opt("--uid-base").opt(&base.to_string()), base..base + 64)
    }
    /// Run `argv` in the box.
    pub fn run(self, argv: &[&str]) -> Run {
        let mut cmd = Command::new(warden_bin());
        cmd.args(&self.opts).arg("--").args(argv);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("spawn warden");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "warden printed no JSON ({e}); exit {:?}\nstdout: {stdout}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Run {
            json,
            code: out.status.code().unwrap_or(-1),
            warden_stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Run a Python fixture.
    pub fn python(self, fixture: &str, args: &[&str]) -> Run {
        let path = format!("/fixtures/{fixture}");
        let mut argv = vec!["/usr/bin/python3", path.as_str()];
        argv.extend_from_slice(args);
        self.run(&argv)
    }
}

static UID_BASE: AtomicU32 = AtomicU32::new(0);

/// Uid bases 61000, 61064, … up to 65400, then around again: plenty for the
/// handful of tests that look for leftover processes by uid.
fn next_uid_base() -> u32 {
    let n = UID_BASE.fetch_add(1, Ordering::Relaxed) % 68;
    61000 + n * 64
}

/// Host pids whose real uid lies in `uids`.
pub fn host_processes_with_uid(uids: &std::ops::Range<u32>) -> Vec<(i32, u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        // A zombie (or a task being torn down) is dead: its pid stays in
        // /proc only until its parent, possibly the host's init, reaps it.
        let dead = status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| matches!(s.trim_start().chars().next(), Some('Z' | 'X')));
        if let Some(uid) = uid.filter(|u| uids.contains(u) && !dead) {
            let name = status.lines().next().unwrap_or("").to_owned();
            found.push((pid, uid, name));
        }
    }
    found
}

/// Assert that no process of the given uid range exists on the host.
/// Processes the kernel is still killing (SIGKILL delivered, exit under
/// way, as when a box's pid namespace is torn down) get two seconds to go.
pub fn assert_no_box_processes(uids: &std::ops::Range<u32>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut left = host_processes_with_uid(uids);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = host_processes_with_uid(uids);
    }
    assert!(left.is_empty(), "processes survived the run: {left:?}");
}

/// Compile the C fixtures once; the setuid probe is installed setuid root.
pub fn c_fixtures() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        // Cargo's scratch space for integration tests: inside the target
        // directory, reused and overwritten by every run.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cbin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["euid", "raw_syscall", "int80"] {
            let status = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(dir.join(name))
                .arg(fixtures().join(format!("{name}.c")))
                .status()
                .expect("run cc (install build-essential)");
            assert!(status.success(), "compiling {name}.c failed");
        }
        // A real setuid-root binary: nosuid mounts and no_new_privs must
        // make it useless inside the box.
        std::fs::set_permissions(dir.join("euid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        dir
    })
    .clone()
}
