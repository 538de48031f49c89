//! Seccomp policy as data: one JSON file per profile, compiled to one BPF
//! program.
//!
//! A profile lists syscalls, each with a comment saying why it is there, an
//! action (`allow`, `kill`, or an errno name such as `EPERM`), and optional
//! argument conditions. The rules of one syscall are tried in file order and
//! the first whose conditions all hold decides; a syscall with no matching
//! rule, or not listed at all, gets the profile's `default_action`.
//!
//! The compiler emits a binary search over syscall numbers, so a syscall
//! costs about log2(n) comparisons. This matters beyond the filter's run
//! time: when a filter is installed, the kernel evaluates it once for every
//! syscall number of every ABI to build its allow cache, so a linear chain of
//! ~300 rules costs over a millisecond per box start (measured: 1402
//! instructions 2.2 ms, 22 instructions 0.06 ms; see `docs/benchmarks.md`).
//! That is why this is not `seccompiler`, whose output is such a chain.
//!
//! "Kill" compiles to `SECCOMP_RET_USER_NOTIF` when the kernel has it: the
//! box's init holds the listener, learns the syscall number, and kills the
//! box, so a violation is reported by name. Without it, kill is
//! `SECCOMP_RET_KILL_PROCESS` and the name is unknown (the death by SIGSYS
//! is still reported as a violation). A syscall of a foreign architecture
//! (a 32-bit `int 0x80` on x86_64) always gets the kill verdict and is
//! reported with its ABI; x32 syscall numbers get the default action.
//!
//! This module never installs anything; the box's init does, after the fork.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

/// Built-in profiles, embedded at compile time so a deployed binary cannot be
/// loosened by editing files next to it.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../policy/default.json")),
    ("strict", include_str!("../policy/strict.json")),
    ("egress", include_str!("../policy/egress.json")),
];

/// Syscalls the jail itself makes after the filter is in place (init's
/// supervisor loop and the start of the program). A profile that forbids any
/// of them would kill every box, so compiling refuses it.
pub const REQUIRED: &[&str] = &[
    "read",
    "write",
    "close",
    "ppoll",
    "wait4",
    "kill",
    "ioctl",
    "clone",
    "setsid",
    "rt_sigaction",
    "prctl",
    "dup3",
    "close_range",
    "chdir",
    "execve",
    "exit",
    "exit_group",
];

/// A seccomp profile as written in its JSON file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name (`default`, `strict`, …).
    pub name: String,
    /// What the profile is for.
    pub description: String,
    /// Verdict for every syscall the profile does not list.
    pub default_action: Action,
    /// A profile this one refines: its rules come after this profile's own,
    /// so for a syscall listed in both, this profile's rules are tried first.
    #[serde(default)]
    pub extends: Option<String>,
    /// The listed syscalls.
    pub rules: Vec<Rule>,
}

/// One syscall entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Syscall name as in the kernel's table (`openat`).
    pub syscall: String,
    /// Verdict when the arguments match (default `allow`).
    #[serde(default)]
    pub action: Action,
    /// Conditions on arguments, all of which must hold.
    #[serde(default)]
    pub args: Vec<ArgCondition>,
    /// Why this syscall is listed. Required: an allow-list nobody can explain
    /// is an allow-list nobody can review.
    pub comment: String,
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    /// Argument index, 0–5.
    pub index: u8,
    /// Comparison.
    pub op: ArgOp,
    /// Value compared against: a number, a symbol (`AF_UNIX`), symbols joined
    /// with `|`, or a token (`$exec_path`, `$spawn_token`, see [`Token`]).
    pub value: Value,
    /// Mask for `masked_eq`, in the same notation as `value`.
    #[serde(default)]
    pub mask: Option<Value>,
    /// Compare all 64 bits (pointers, `unsigned long` flags) rather than the
    /// low 32 bits (`int` arguments, where the kernel ignores the upper half
    /// and so must the filter).
    #[serde(default)]
    pub wide: bool,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    /// `arg == value`
    Eq,
    /// `arg != value`
    Ne,
    /// `arg & mask == value`
    MaskedEq,
}

/// A number or a symbolic constant.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A plain number.
    Number(u64),
    /// Symbols joined by `|`, or a `$token`.
    Symbol(String),
}

/// Values known only at launch, patched into the program for each box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Token {
    /// `$exec_path`: the address of the program path the jail passes to
    /// `execve`. Matching it lets a profile allow the jail's own exec and no
    /// later one: the program cannot read its parent's memory to learn it.
    ExecPath,
    /// `$spawn_token`: a random value the jail passes in an argument the
    /// kernel ignores when init forks the program (`clone`'s `parent_tid`
    /// without `CLONE_PARENT_SETTID`), so a profile can forbid every other
    /// new process.
    SpawnToken,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Action {
    /// Let the syscall run.
    #[default]
    Allow,
    /// Kill the box and report a violation.
    Kill,
    /// Fail the syscall with this errno.
    Errno(i32),
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "allow" => Ok(Action::Allow),
            "kill" => Ok(Action::Kill),
            other => errno_by_name(other).map(Action::Errno).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown action `{other}`: expected `allow`, `kill` or an errno name such as `EPERM`"
                ))
            }),
        }
    }
}

fn errno_by_name(name: &str) -> Option<i32> {
    Some(match name {
        "EPERM" => libc::EPERM,
        "EACCES" => libc::EACCES,
        "ENOSYS" => libc::ENOSYS,
        "EINVAL" => libc::EINVAL,
        "ENOTSUP" => libc::ENOTSUP,
        "EAFNOSUPPORT" => libc::EAFNOSUPPORT,
        _ => return None,
    })
}

/// Symbolic constants a profile may use in argument conditions.
fn symbol(name: &str) -> Option<u64> {
    let v: i64 = match name {
        "AF_UNIX" => libc::AF_UNIX.into(),
        "AF_INET" => libc::AF_INET.into(),
        "AF_INET6" => libc::AF_INET6.into(),
        "AF_NETLINK" => libc::AF_NETLINK.into(),
        "AF_PACKET" => libc::AF_PACKET.into(),
        "SOCK_STREAM" => libc::SOCK_STREAM.into(),
        // The type bits of socket()'s second argument, without the
        // SOCK_NONBLOCK and SOCK_CLOEXEC flags (the kernel's SOCK_TYPE_MASK).
        "SOCK_TYPE_MASK" => 0xf,
        "CLONE_THREAD" => libc::CLONE_THREAD.into(),
        "CLONE_NEWNS" => libc::CLONE_NEWNS.into(),
        "CLONE_NEWCGROUP" => libc::CLONE_NEWCGROUP.into(),
        "CLONE_NEWUTS" => libc::CLONE_NEWUTS.into(),
        "CLONE_NEWIPC" => libc::CLONE_NEWIPC.into(),
        "CLONE_NEWUSER" => libc::CLONE_NEWUSER.into(),
        "CLONE_NEWPID" => libc::CLONE_NEWPID.into(),
        "CLONE_NEWNET" => libc::CLONE_NEWNET.into(),
        "CLONE_NEWTIME" => 0x80,
        "TIOCSTI" => libc::TIOCSTI as i64,
        "TIOCLINUX" => libc::TIOCLINUX as i64,
        _ => return None,
    };
    u64::try_from(v).ok()
}

/// Errors in a profile. Each names the profile and, where there is one, the
/// rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is not valid JSON for the profile format.
    #[error("seccomp profile {origin}: {source}")]
    Parse {
        /// File or built-in name.
        origin: String,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// Reading a profile file failed.
    #[error("seccomp profile {path}: cannot read")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule is wrong.
    #[error("seccomp profile {profile}, rule {index} (`{syscall}`): {reason}")]
    Rule {
        /// Profile name.
        profile: String,
        /// Index of the rule in `rules`.
        index: usize,
        /// The rule's syscall.
        syscall: String,
        /// What is wrong.
        reason: String,
    },
    /// The profile as a whole is wrong.
    #[error("seccomp profile {profile}: {reason}")]
    Profile {
        /// Profile name.
        profile: String,
        /// What is wrong.
        reason: String,
    },
    /// No profile with that name.
    #[error("unknown seccomp profile `{0}`: use `default`, `strict`, or a path to a profile JSON file")]
    Unknown(String),
}

// ---- BPF ---------------------------------------------------------------

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// `BPF_LD | BPF_W | BPF_ABS` (both of the first two are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

/// Seccomp return values.
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn off_arg_hi(i: u8) -> u32 {
    off_arg_lo(i) + 4
}

/// x32 syscalls share x86_64's audit arch and set this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_*` values of the ABIs a box may try (`seccomp_data.arch`).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

pub(crate) fn native_arch() -> Option<u32> {
    match std::env::consts::ARCH {
        "x86_64" => Some(AUDIT_ARCH_X86_64),
        "aarch64" => Some(AUDIT_ARCH_AARCH64),
        _ => None,
    }
}

/// A condition resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    index: u8,
    wide: bool,
    op: ArgOp,
    mask: u64,
    value: CondValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CondValue {
    Const(u64),
    Token(Token),
}

/// Rules of one syscall, in file order.
type Resolved = BTreeMap<u32, Vec<(Vec<Cond>, Action)>>;

/// Instructions before jump resolution.
enum Insn {
    Raw(SockFilter),
    /// `k` patched per launch with a half of a token.
    TokenK {
        code: u16,
        jt: u8,
        jf: u8,
        token: Token,
        high: bool,
    },
    Ja(usize),
    Label(usize),
}

struct Emitter {
    insns: Vec<Insn>,
    labels: usize,
}

/// Where a syscall number leads: a verdict, or a block of argument checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ret(u32),
    Block(usize),
}

/// Instructions [`Emitter::ranges`] emits for `n` intervals.
fn ranges_len(n: usize) -> usize {
    if n <= 1 {
        return n;
    }
    let left = ranges_len(n / 2);
    let node = if left <= usize::from(u8::MAX) { 1 } else { 2 };
    node + left + ranges_len(n - n / 2)
}

/// Intervals covering every number from 0 up, from each number's target
/// (in increasing order); numbers no rule names get `default`.
fn intervals(targets: &BTreeMap<u32, Target>, default: u32) -> Vec<(u32, Target)> {
    let mut iv: Vec<(u32, Target)> = Vec::new();
    let mut push = |start: u32, t: Target| {
        if iv.last().is_none_or(|(_, last)| *last != t) {
            iv.push((start, t));
        }
    };
    let mut next = Some(0u32);
    for (&nr, &t) in targets {
        if next.is_some_and(|n| nr > n) {
            push(next.unwrap_or(nr), Target::Ret(default));
        }
        push(nr, t);
        next = nr.checked_add(1);
    }
    if let Some(n) = next {
        push(n, Target::Ret(default));
    }
    iv
}

impl Emitter {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn raw(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.insns.push(Insn::Raw(SockFilter { code, jt, jf, k }));
    }
    fn ld(&mut self, off: u32) {
        self.raw(BPF_LD_W_ABS, 0, 0, off);
    }
    fn ret(&mut self, k: u32) {
        self.raw(BPF_RET_K, 0, 0, k);
    }
    fn ja(&mut self, label: usize) {
        self.insns.push(Insn::Ja(label));
    }
    fn place(&mut self, label: usize) {
        self.insns.push(Insn::Label(label));
    }
    /// `if (A == half(value)) skip 1 (pass) else fall into `ja fail``, or
    /// the reverse for `Ne`.
    fn cmp(&mut self, value: CondValue, high: bool, jt: u8, jf: u8) {
        match value {
            CondValue::Const(v) => {
                let k = if high { (v >> 32) as u32 } else { v as u32 };
                self.raw(BPF_JMP_JEQ_K, jt, jf, k);
            }
            CondValue::Token(token) => self.insns.push(Insn::TokenK {
                code: BPF_JMP_JEQ_K,
                jt,
                jf,
                token,
                high,
            }),
        }
    }

    /// Emit the checks of one condition; on failure jump to `fail`.
    fn cond(&mut self, c: &Cond, fail: usize) {
        let halves: &[bool] = if c.wide { &[true, false] } else { &[false] };
        match c.op {
            ArgOp::Eq | ArgOp::MaskedEq => {
                for &high in halves {
                    self.ld(if high {
                        off_arg_hi(c.index)
                    } else {
                        off_arg_lo(c.index)
                    });
                    let mut value = c.value;
                    if c.op == ArgOp::MaskedEq {
                        let m = if high {
                            (c.mask >> 32) as u32
                        } else {
                            c.mask as u32
                        };
                        self.raw(BPF_ALU_AND_K, 0, 0, m);
                        if let CondValue::Const(v) = value {
                            value = CondValue::Const(v & c.mask);
                        }
                    }
                    self.cmp(value, high, 1, 0);
                    self.ja(fail);
                }
            }
            ArgOp::Ne => {
                if c.wide {
                    // Fails only when both halves are equal.
                    self.ld(off_arg_hi(c.index));
                    self.cmp(c.value, true, 0, 3);
                    self.ld(off_arg_lo(c.index));
                    self.cmp(c.value, false, 0, 1);
                    self.ja(fail);
                } else {
                    self.ld(off_arg_lo(c.index));
                    self.cmp(c.value, false, 0, 1);
                    self.ja(fail);
                }
            }
        }
    }

    /// Binary search over intervals of syscall numbers. `iv[i]` starts at
    /// its number and runs up to the next one's (the last, to the end); each
    /// returns its verdict at once or jumps to its block of argument checks.
    /// Neighbouring numbers with one verdict share an interval, so the
    /// program has one leaf per change of verdict, not one per number: the
    /// kernel converts and JITs every instruction at each box's start.
    fn ranges(&mut self, iv: &[(u32, Target)]) {
        if let [(_, target)] = iv {
            match *target {
                Target::Ret(k) => self.ret(k),
                Target::Block(label) => self.ja(label),
            }
            return;
        }
        let mid = iv.len() / 2;
        // Over the left half when it is near enough for a conditional
        // jump's 8-bit offset; through a `ja` otherwise.
        match u8::try_from(ranges_len(mid)) {
            Ok(skip) => self.raw(BPF_JMP_JGE_K, skip, 0, iv[mid].0),
            Err(_) => {
                let right = self.label();
                self.raw(BPF_JMP_JGE_K, 0, 1, iv[mid].0);
                self.ja(right);
                self.ranges(&iv[..mid]);
                self.place(right);
                self.ranges(&iv[mid..]);
                return;
            }
        }
        self.ranges(&iv[..mid]);
        self.ranges(&iv[mid..]);
    }

    /// Resolve labels. Returns the program and where each token half goes.
    fn finish(self) -> (Vec<SockFilter>, Vec<(usize, Token, bool)>) {
        let mut pos = vec![0usize; self.labels];
        let mut n = 0;
        for insn in &self.insns {
            match insn {
                Insn::Label(l) => pos[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut tokens = Vec::new();
        for insn in self.insns {
            match insn {
                Insn::Raw(f) => out.push(f),
                Insn::TokenK {
                    code,
                    jt,
                    jf,
                    token,
                    high,
                } => {
                    tokens.push((out.len(), token, high));
                    out.push(SockFilter { code, jt, jf, k: 0 });
                }
                Insn::Ja(l) => {
                    let here = out.len() + 1;
                    out.push(SockFilter {
                        code: BPF_JMP_JA,
                        jt: 0,
                        jf: 0,
                        k: (pos[l] - here) as u32,
                    });
                }
                Insn::Label(_) => {}
            }
        }
        (out, tokens)
    }
}

fn verdict(action: Action, kill: u32) -> u32 {
    match action {
        Action::Allow => RET_ALLOW,
        Action::Errno(e) => RET_ERRNO | (e as u32 & 0xffff),
        Action::Kill => kill,
    }
}

impl Profile {
    /// Parse a profile from JSON text.
    pub fn from_json(origin: &str, text: &str) -> Result<Profile, PolicyError> {
        serde_json::from_str(text).map_err(|source| PolicyError::Parse {
            origin: origin.to_owned(),
            source,
        })
    }

    /// A built-in profile by name, or a profile file when `name` contains a
    /// `/` or ends in `.json`.
    pub fn load(name: &str) -> Result<Profile, PolicyError> {
        Profile::load_depth(name, 0)
    }

    fn load_depth(name: &str, depth: usize) -> Result<Profile, PolicyError> {
        let profile = if let Some((_, text)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == name) {
            Profile::from_json(name, text)?
        } else if name.contains('/') || name.ends_with(".json") {
            let text = std::fs::read_to_string(Path::new(name)).map_err(|source| PolicyError::Read {
                path: name.to_owned(),
                source,
            })?;
            Profile::from_json(name, &text)?
        } else {
            return Err(PolicyError::Unknown(name.to_owned()));
        };
        profile.flatten(depth)
    }

    /// Fold the profile this one `extends` in: its rules after ours.
    fn flatten(mut self, depth: usize) -> Result<Profile, PolicyError> {
        let Some(parent) = self.extends.take() else {
            return Ok(self);
        };
        if depth >= 4 {
            return Err(self.profile_error(format!(
                "`extends: {parent}` goes more than 4 profiles deep (a cycle?)"
            )));
        }
        let parent = Profile::load_depth(&parent, depth + 1)?;
        self.rules.extend(parent.rules);
        Ok(self)
    }

    fn rule_error(&self, index: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError::Rule {
            profile: self.name.clone(),
            index,
            syscall: self.rules[index].syscall.clone(),
            reason: reason.into(),
        }
    }

    fn profile_error(&self, reason: impl Into<String>) -> PolicyError {
        PolicyError::Profile {
            profile: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Check every rule and turn names and symbols into numbers.
    fn resolve(&self) -> Result<Resolved, PolicyError> {
        if self.default_action == Action::Allow {
            return Err(self
                .profile_error("default_action must deny (`kill` or an errno): a profile is an allow-list"));
        }
        let mut resolved = Resolved::new();
        let mut unconditional: BTreeMap<u32, usize> = BTreeMap::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.comment.trim().is_empty() {
                return Err(self.rule_error(index, "every rule needs a comment saying why"));
            }
            let nr = syscalls::Sysno::from_str(&rule.syscall)
                .map_err(|_| self.rule_error(index, "no such syscall on this architecture"))?
                .id() as u32;
            if let Some(first) = unconditional.get(&nr) {
                return Err(self.rule_error(
                    index,
                    format!("unreachable: rule {first} already decides every call of this syscall"),
                ));
            }
            let mut conds = Vec::new();
            for c in &rule.args {
                conds.push(self.condition(index, c)?);
            }
            if conds.is_empty() {
                unconditional.insert(nr, index);
            }
            resolved.entry(nr).or_default().push((conds, rule.action));
        }
        for name in REQUIRED {
            let nr = syscalls::Sysno::from_str(name).map(|s| s.id() as u32).ok();
            let ok = nr
                .and_then(|nr| resolved.get(&nr))
                .is_some_and(|rules| rules.iter().any(|(_, a)| *a == Action::Allow));
            if !ok {
                return Err(self.profile_error(format!(
                    "`{name}` must be allowed (at least under some arguments): the jail itself needs it to start and supervise the program"
                )));
            }
        }
        Ok(resolved)
    }

    fn condition(&self, index: usize, c: &ArgCondition) -> Result<Cond, PolicyError> {
        if c.index > 5 {
            return Err(self.rule_error(index, format!("argument index {} is out of range 0–5", c.index)));
        }
        let value = self.value(index, &c.value)?;
        let mask = match (&c.op, &c.mask) {
            (ArgOp::MaskedEq, Some(m)) => match self.value(index, m)? {
                CondValue::Const(m) => m,
                CondValue::Token(_) => return Err(self.rule_error(index, "a mask cannot be a token")),
            },
            (ArgOp::MaskedEq, None) => return Err(self.rule_error(index, "`masked_eq` needs a `mask`")),
            (_, Some(_)) => return Err(self.rule_error(index, "`mask` only goes with `masked_eq`")),
            (_, None) => u64::MAX,
        };
        let token = matches!(value, CondValue::Token(_));
        if token && c.op != ArgOp::Eq {
            return Err(self.rule_error(index, "tokens only work with `eq`"));
        }
        if let CondValue::Const(v) = value
            && !c.wide
            && v > u64::from(u32::MAX)
        {
            return Err(self.rule_error(index, format!("{v:#x} does not fit 32 bits: set `wide`")));
        }
        Ok(Cond {
            index: c.index,
            wide: c.wide || token,
            op: c.op,
            mask,
            value,
        })
    }

    fn value(&self, index: usize, value: &Value) -> Result<CondValue, PolicyError> {
        match value {
            Value::Number(n) => Ok(CondValue::Const(*n)),
            Value::Symbol(s) if s == "$exec_path" => Ok(CondValue::Token(Token::ExecPath)),
            Value::Symbol(s) if s == "$spawn_token" => Ok(CondValue::Token(Token::SpawnToken)),
            Value::Symbol(s) => {
                let mut acc = 0u64;
                for part in s.split('|').map(str::trim) {
                    acc |= symbol(part)
                        .ok_or_else(|| self.rule_error(index, format!("unknown constant `{part}`")))?;
                }
                Ok(CondValue::Const(acc))
            }
        }
    }

    /// Check the profile and compile it for the architecture this binary runs
    /// on. With `user_notif`, kill verdicts notify init instead of killing.
    pub fn compile(&self, user_notif: bool) -> Result<CompiledProfile, PolicyError> {
        let arch = native_arch().ok_or_else(|| {
            self.profile_error(format!("unsupported architecture {}", std::env::consts::ARCH))
        })?;
        let resolved = self.resolve()?;
        let kill = if user_notif {
            RET_USER_NOTIF
        } else {
            RET_KILL_PROCESS
        };
        let default = verdict(self.default_action, kill);

        let mut e = Emitter {
            insns: Vec::new(),
            labels: 0,
        };
        // A foreign ABI (a 32-bit `int 0x80` on x86_64) has other syscall
        // numbers: none of the rules apply, so it is always killed, through
        // init when it can be notified, so the report names it.
        e.ld(OFF_ARCH);
        e.raw(BPF_JMP_JEQ_K, 1, 0, arch);
        e.ret(kill);
        e.ld(OFF_NR);
        if std::env::consts::ARCH == "x86_64" {
            e.raw(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT);
            e.ret(default);
        }
        // A syscall decided by one unconditional rule returns its verdict
        // from the search's leaf; the others get a block of checks.
        let mut targets: BTreeMap<u32, Target> = BTreeMap::new();
        for (nr, rules) in &resolved {
            let target = match rules.as_slice() {
                [(conds, action)] if conds.is_empty() => Target::Ret(verdict(*action, kill)),
                _ => Target::Block(e.label()),
            };
            targets.insert(*nr, target);
        }
        e.ranges(&intervals(&targets, default));
        for (nr, rules) in &resolved {
            let Target::Block(label) = targets[nr] else {
                continue;
            };
            e.place(label);
            for (conds, action) in rules {
                let next = e.label();
                for c in conds {
                    e.cond(c, next);
                }
                e.ret(verdict(*action, kill));
                e.place(next);
            }
            e.ret(default);
        }
        let (program, tokens) = e.finish();
        if program.len() > 4096 {
            return Err(self.profile_error(format!(
                "{} BPF instructions: the kernel takes at most 4096",
                program.len()
            )));
        }
        let has_kill =
            self.default_action == Action::Kill || self.rules.iter().any(|r| r.action == Action::Kill);
        Ok(CompiledProfile {
            name: self.name.clone(),
            program,
            listener: has_kill && user_notif,
            tokens,
        })
    }
}

/// A profile compiled for this architecture.
#[derive(Debug, Clone)]
pub struct CompiledProfile {
    /// Profile name.
    pub name: String,
    /// The BPF program.
    pub program: Vec<SockFilter>,
    /// Install with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (kill notifies init).
    pub listener: bool,
    tokens: Vec<(usize, Token, bool)>,
}

impl CompiledProfile {
    /// The program with its tokens set for one launch.
    pub fn with_tokens(&self, exec_path: u64, spawn_token: u64) -> Vec<SockFilter> {
        let mut program = self.program.clone();
        for (at, token, high) in &self.tokens {
            let v = match token {
                Token::ExecPath => exec_path,
                Token::SpawnToken => spawn_token,
            };
            program[*at].k = if *high { (v >> 32) as u32 } else { v as u32 };
        }
        program
    }

    /// The tokens this profile uses.
    pub fn uses(&self, token: Token) -> bool {
        self.tokens.iter().any(|(_, t, _)| *t == token)
    }
}

/// Name of syscall `nr` on this architecture, for violation reports.
pub fn syscall_name(nr: i64) -> String {
    usize::try_from(nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map(|s| s.name().to_owned())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

/// Name of syscall `nr` of the ABI `arch` (an `AUDIT_ARCH_*` value), and the
/// ABI's name: a box may try the 32-bit ABI, whose numbers differ.
pub fn syscall_name_in(nr: i64, arch: u32) -> (String, &'static str) {
    if Some(arch) == native_arch() {
        return (syscall_name(nr), std::env::consts::ARCH);
    }
    match arch {
        AUDIT_ARCH_I386 => (
            usize::try_from(nr)
                .ok()
                .and_then(syscalls::x86::Sysno::new)
                .map(|s| s.name().to_owned())
                .unwrap_or_else(|| format!("syscall_{nr}")),
            "i386",
        ),
        AUDIT_ARCH_X86_64 => (format!("syscall_{nr}"), "x86_64"),
        AUDIT_ARCH_AARCH64 => (format!("syscall_{nr}"), "aarch64"),
        _ => (format!("syscall_{nr}"), "unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subset of classic BPF the compiler emits, run on one
    /// `seccomp_data`: the reference the kernel would agree with.
    fn emulate(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                _ => panic!("load from offset {off}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..10_000 {
            let i = prog[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = word(i.k),
                BPF_ALU_AND_K => acc &= i.k,
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                BPF_JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program loops");
    }

    /// The profile's meaning, straight from its rules.
    fn reference(
        p: &Profile,
        resolved: &Resolved,
        nr: u32,
        args: [u64; 6],
        kill: u32,
        tokens: (u64, u64),
    ) -> u32 {
        let default = verdict(p.default_action, kill);
        if nr & X32_SYSCALL_BIT != 0 {
            return default;
        }
        let Some(rules) = resolved.get(&nr) else {
            return default;
        };
        for (conds, action) in rules {
            let holds = conds.iter().all(|c| {
                let v = match c.value {
                    CondValue::Const(v) => v,
                    CondValue::Token(Token::ExecPath) => tokens.0,
                    CondValue::Token(Token::SpawnToken) => tokens.1,
                };
                let a = if c.wide {
                    args[c.index as usize]
                } else {
                    args[c.index as usize] & 0xffff_ffff
                };
                let (a, v) = if c.wide { (a, v) } else { (a, v & 0xffff_ffff) };
                match c.op {
                    ArgOp::Eq => a == v,
                    ArgOp::Ne => a != v,
                    ArgOp::MaskedEq => a & c.mask == v & c.mask,
                }
            });
            if holds {
                return verdict(*action, kill);
            }
        }
        default
    }

    /// Argument vectors that hit every condition's edges.
    fn probes(p: &Profile, tokens: (u64, u64)) -> Vec<[u64; 6]> {
        let mut values = vec![
            0u64,
            1,
            2,
            10,
            16,
            u64::MAX,
            0x1_0000_0002,
            tokens.0,
            tokens.1,
            tokens.1 ^ 1,
        ];
        for r in &p.rules {
            for c in &r.args {
                if let Ok(CondValue::Const(v)) = p.value(0, &c.value) {
                    values.extend([v, v ^ 1, v | (1 << 40), v.wrapping_add(1)]);
                }
                if let Some(Ok(CondValue::Const(m))) = c.mask.as_ref().map(|m| p.value(0, m)) {
                    values.extend([m, m | 0x10000, !m]);
                }
            }
        }
        let mut out = Vec::new();
        for v in values {
            for i in 0..6 {
                let mut a = [0u64; 6];
                a[i] = v;
                out.push(a);
            }
            out.push([v; 6]);
        }
        out
    }

    #[test]
    fn compiled_programs_agree_with_the_rules_for_every_syscall() {
        for (name, _) in BUILTIN_PROFILES {
            let p = Profile::load(name).unwrap();
            for notif in [true, false] {
                let c = p.compile(notif).unwrap();
                let kill = if notif { RET_USER_NOTIF } else { RET_KILL_PROCESS };
                let tokens = (0x0000_7ffd_dead_beef, 0x5eed_1234_abcd_0042);
                let prog = c.with_tokens(tokens.0, tokens.1);
                let arch = native_arch().unwrap();
                let probes = probes(&p, tokens);
                let resolved = p.resolve().unwrap();
                for nr in (0..600).chain([X32_SYSCALL_BIT | 101, X32_SYSCALL_BIT | 1, u32::MAX]) {
                    for args in &probes {
                        assert_eq!(
                            emulate(&prog, arch, nr, *args),
                            reference(&p, &resolved, nr, *args, kill, tokens),
                            "{name}: syscall {nr} args {args:x?}"
                        );
                    }
                }
                assert_eq!(
                    emulate(&prog, AUDIT_ARCH_I386, 0, [0; 6]),
                    kill,
                    "a foreign arch must die, through init when it can be notified"
                );
            }
        }
    }

    #[test]
    fn programs_are_short_and_searches_are_logarithmic() {
        for (name, _) in BUILTIN_PROFILES {
            let c = Profile::load(name).unwrap().compile(true).unwrap();
            // One leaf per change of verdict, not one per syscall: the kernel
            // converts and JITs every instruction at each box's start.
            assert!(c.program.len() < 350, "{name}: {} instructions", c.program.len());
            // Longest path: count instructions executed for every syscall.
            let arch = native_arch().unwrap();
            let longest = (0..600u32)
                .map(|nr| {
                    let mut steps = 0;
                    let (mut pc, mut acc) = (0usize, 0u32);
                    loop {
                        let i = c.program[pc];
                        pc += 1;
                        steps += 1;
                        match i.code {
                            BPF_LD_W_ABS => {
                                acc = if i.k == 0 {
                                    nr
                                } else if i.k == 4 {
                                    arch
                                } else {
                                    0
                                }
                            }
                            BPF_ALU_AND_K => acc &= i.k,
                            BPF_JMP_JA => pc += i.k as usize,
                            BPF_JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                            BPF_JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                            _ => break steps,
                        }
                    }
                })
                .max()
                .unwrap();
            assert!(longest < 40, "{name}: a syscall walks {longest} instructions");
        }
    }

    #[test]
    fn kill_notifies_only_when_the_kernel_can() {
        let p = Profile::load("strict").unwrap();
        assert!(p.compile(true).unwrap().listener);
        assert!(!p.compile(false).unwrap().listener);
        let c = p.compile(true).unwrap();
        assert!(c.uses(Token::ExecPath) && c.uses(Token::SpawnToken));
        assert!(
            !Profile::load("default")
                .unwrap()
                .compile(true)
                .unwrap()
                .uses(Token::ExecPath)
        );
    }

    #[test]
    fn bad_profiles_are_refused_with_the_rule_named() {
        let required: String = REQUIRED
            .iter()
            .map(|s| format!(r#"{{"syscall":"{s}","comment":"c"}},"#))
            .collect();
        let cases = [
            (r#"{"name":"x","description":"","default_action":"allow","rules":[]}"#.to_owned(), "default_action must deny"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"nope","comment":"c"}}]}}"#), "(`nope`): no such syscall"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"getpid","comment":" "}}]}}"#), "(`getpid`): every rule needs a comment"),
            (r#"{"name":"x","description":"","default_action":"EPERM","rules":[{"syscall":"read","comment":"c"}]}"#.to_owned(), "`write` must be allowed"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"socket","comment":"c","args":[{{"index":0,"op":"eq","value":"AF_BOGUS"}}]}}]}}"#), "unknown constant `AF_BOGUS`"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"read","comment":"again"}}]}}"#), "(`read`): unreachable: rule 0"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"socket","comment":"c","args":[{{"index":7,"op":"eq","value":1}}]}}]}}"#), "argument index 7"),
            (format!(r#"{{"name":"x","description":"","default_action":"EPERM","rules":[{required}{{"syscall":"socket","comment":"c","args":[{{"index":0,"op":"eq","value":4294967296}}]}}]}}"#), "set `wide`"),
        ];
        for (json, expected) in cases {
            let err = Profile::from_json("t", &json).and_then(|p| p.compile(true).map(|_| ()));
            let msg = err.unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg:?} should contain {expected:?}");
        }
        let err = Profile::from_json(
            "t",
            r#"{"name":"x","description":"","default_action":"EWHAT","rules":[]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown action `EWHAT`"), "{err}");
        assert!(
            Profile::load("nope")
                .unwrap_err()
                .to_string()
                .contains("unknown seccomp profile")
        );
    }

    #[test]
    fn the_egress_profile_allows_tcp_streams_only_on_top_of_default() {
        let arch = native_arch().unwrap();
        let socket = syscalls::Sysno::socket.id() as u32;
        let eacces = RET_ERRNO | libc::EACCES as u32;
        let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64;
        let run = |name: &str, domain: i32, kind: u64| {
            let c = Profile::load(name).unwrap().compile(true).unwrap();
            emulate(
                &c.with_tokens(0, 0),
                arch,
                socket,
                [domain as u64, kind, 0, 0, 0, 0],
            )
        };
        for domain in [libc::AF_INET, libc::AF_INET6] {
            assert_eq!(run("egress", domain, stream), RET_ALLOW);
            assert_eq!(run("default", domain, stream), eacces);
            for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW, libc::SOCK_SEQPACKET] {
                assert_eq!(run("egress", domain, kind as u64), eacces, "type {kind}");
            }
        }
        // Everything else is the default profile's verdict.
        assert_eq!(run("egress", libc::AF_UNIX, stream), RET_ALLOW);
        assert_eq!(run("egress", libc::AF_NETLINK, libc::SOCK_RAW as u64), eacces);
        let ptrace = syscalls::Sysno::ptrace.id() as u32;
        let c = Profile::load("egress").unwrap().compile(true).unwrap();
        assert_eq!(
            emulate(&c.with_tokens(0, 0), arch, ptrace, [0; 6]),
            RET_USER_NOTIF
        );
    }

    #[test]
    fn profiles_extend_at_most_a_few_levels() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(
            &a,
            format!(
                r#"{{"name":"a","description":"","default_action":"EPERM","extends":"{}","rules":[]}}"#,
                a.display()
            ),
        )
        .unwrap();
        let err = Profile::load(a.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("more than 4 profiles deep"), "{err}");
    }

    #[test]
    fn names_syscalls() {
        assert_eq!(syscall_name(syscalls::Sysno::ptrace.id() as i64), "ptrace");
        assert_eq!(syscall_name(99_999), "syscall_99999");
        let native = native_arch().unwrap();
        assert_eq!(
            syscall_name_in(syscalls::Sysno::ptrace.id() as i64, native),
            ("ptrace".to_owned(), std::env::consts::ARCH)
        );
        // i386 numbers differ: 11 is execve there (it is munmap on x86_64).
        assert_eq!(
            syscall_name_in(11, AUDIT_ARCH_I386),
            ("execve".to_owned(), "i386")
        );
        assert_eq!(syscall_name_in(7, 0x1234), ("syscall_7".to_owned(), "unknown"));
    }
}
