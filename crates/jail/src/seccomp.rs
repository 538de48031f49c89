//! Seccomp policy as data: one JSON file per profile, compiled to BPF with
//! `seccompiler`.
//!
//! A profile lists syscalls, each with a comment saying why it is there, an
//! action (`allow`, `kill`, or an errno name such as `EPERM`), and optional
//! argument conditions. Everything not listed gets the profile's
//! `default_action`. The profile compiles into a small stack of filters (the
//! kernel applies the most severe verdict among them):
//!
//! * a *base* filter: listed syscalls pass, anything else gets the default;
//! * one filter per errno value used by a rule;
//! * a *kill* filter for explicitly killed syscalls when the default is an
//!   errno.
//!
//! "Kill" is compiled to `SECCOMP_RET_USER_NOTIF` when the kernel has it: the
//! box's init receives the notification, learns the syscall number, and kills
//! the box, so a violation is reported by name. Without it, kill is
//! `SECCOMP_RET_KILL_PROCESS` and the name is unknown. An architecture
//! mismatch always kills outright.
//!
//! This module never installs anything; `sys::child` does, after `fork`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use serde::Deserialize;

/// Built-in profiles, embedded at compile time so a deployed binary cannot be
/// loosened by editing files next to it.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../policy/default.json")),
    ("strict", include_str!("../policy/strict.json")),
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
    /// with `|`, or `$exec_path` (the address of the path the jail itself
    /// passes to `execve`, which lets a profile forbid any later exec).
    pub value: Value,
    /// Mask for `masked_eq`, in the same notation as `value`.
    #[serde(default)]
    pub mask: Option<Value>,
    /// Compare all 64 bits (pointers, flags of type `unsigned long`) rather
    /// than the low 32 bits (`int` arguments, where the kernel ignores the
    /// upper half and so must the filter).
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
    /// Symbols joined by `|`, or `$exec_path`.
    Symbol(String),
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

/// Placeholder for `$exec_path`, patched per launch with the real address.
/// Its two halves must not occur anywhere else in a compiled program; the
/// patch step checks that it found exactly the expected number of each.
const EXEC_TOKEN: u64 = 0x5741_5244_454e_0e0e;

/// Seccomp return value for "notify the supervisor" (kernel 5.0+).
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// Seccomp return value for "kill the whole process".
const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// Placeholder verdict for `kill` rules, rewritten after compilation to
/// [`RET_USER_NOTIF`] or [`RET_KILL_PROCESS`]. `SECCOMP_RET_TRACE` with a data
/// value no real tracer would use; never installed as is.
const KILL_PLACEHOLDER: u32 = 0x7ff0_0000 | 0x5744;

const BPF_RET_K: u16 = 0x06;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;

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
    /// `seccompiler` refused the filter.
    #[error("seccomp profile {profile}: compiling to BPF failed: {reason}")]
    Compile {
        /// Profile name.
        profile: String,
        /// seccompiler's message.
        reason: String,
    },
    /// No profile with that name.
    #[error("unknown seccomp profile `{0}`: use `default`, `strict`, or a path to a profile JSON file")]
    Unknown(String),
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
        if let Some((_, text)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == name) {
            return Profile::from_json(name, text);
        }
        if name.contains('/') || name.ends_with(".json") {
            let text = std::fs::read_to_string(Path::new(name)).map_err(|source| PolicyError::Read {
                path: name.to_owned(),
                source,
            })?;
            return Profile::from_json(name, &text);
        }
        Err(PolicyError::Unknown(name.to_owned()))
    }

    fn rule_error(&self, index: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError::Rule {
            profile: self.name.clone(),
            index,
            syscall: self.rules[index].syscall.clone(),
            reason: reason.into(),
        }
    }

    /// Check the profile and compile it for the architecture this binary runs
    /// on.
    pub fn compile(&self, user_notif: bool) -> Result<CompiledProfile, PolicyError> {
        let arch = native_arch().ok_or_else(|| PolicyError::Profile {
            profile: self.name.clone(),
            reason: format!("unsupported architecture {}", std::env::consts::ARCH),
        })?;
        if self.default_action == Action::Allow {
            return Err(PolicyError::Profile {
                profile: self.name.clone(),
                reason: "default_action must deny (`kill` or an errno): a profile is an allow-list".into(),
            });
        }

        // Resolve every rule first, so all mistakes surface before compiling.
        let mut resolved: Vec<(i64, Action, Option<SeccompRule>)> = Vec::new();
        let mut exec_tokens = 0usize;
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.comment.trim().is_empty() {
                return Err(self.rule_error(index, "every rule needs a comment saying why"));
            }
            let nr = syscalls::Sysno::from_str(&rule.syscall)
                .map_err(|_| self.rule_error(index, "no such syscall on this architecture"))?
                .id() as i64;
            let mut conditions = Vec::new();
            for cond in &rule.args {
                let (cond, token) = self.condition(index, cond)?;
                exec_tokens += usize::from(token);
                conditions.push(cond);
            }
            let seccomp_rule = if conditions.is_empty() {
                None
            } else {
                Some(SeccompRule::new(conditions).map_err(|e| self.rule_error(index, e.to_string()))?)
            };
            resolved.push((nr, rule.action, seccomp_rule));
        }
        for required in ["execve", "exit_group", "write"] {
            let nr = syscalls::Sysno::from_str(required).map(|s| s.id() as i64).ok();
            if !resolved
                .iter()
                .any(|(n, a, _)| Some(*n) == nr && *a == Action::Allow)
            {
                return Err(PolicyError::Profile {
                    profile: self.name.clone(),
                    reason: format!("`{required}` must be allowed: the jail needs it to start the program"),
                });
            }
        }
        // A syscall listed unconditionally under one verdict and also under
        // another would make the outcome depend on filter order: refuse.
        let mut unconditional: BTreeMap<i64, Action> = BTreeMap::new();
        for (i, (nr, action, rule)) in resolved.iter().enumerate() {
            if rule.is_none()
                && let Some(prev) = unconditional.insert(*nr, *action)
                && prev != *action
            {
                return Err(self.rule_error(i, "listed twice with different actions"));
            }
        }

        let kill_verdict = if user_notif {
            RET_USER_NOTIF
        } else {
            RET_KILL_PROCESS
        };
        let mut filters = Vec::new();

        // Base: everything allowed or given an errno passes; the rest gets the
        // default verdict. The kernel ranks ERRNO above USER_NOTIF, so when
        // the default is an errno, explicitly killed syscalls must pass the
        // base filter too, or its EPERM would hide the kill filter's verdict.
        let mut base = RuleMap::new();
        for (nr, action, rule) in &resolved {
            if *action == Action::Kill && self.default_action == Action::Kill {
                continue;
            }
            push_rule(&mut base, *nr, rule.clone());
        }
        let base_mismatch = match self.default_action {
            Action::Kill => SeccompAction::Trace(KILL_PLACEHOLDER & 0xffff),
            Action::Errno(e) => SeccompAction::Errno(e as u32),
            Action::Allow => unreachable!("checked above"),
        };
        filters.push(self.build(arch, base, base_mismatch, SeccompAction::Allow)?);

        // One filter per errno value.
        let errnos: BTreeSet<i32> = resolved
            .iter()
            .filter_map(|(_, a, _)| match a {
                Action::Errno(e) => Some(*e),
                _ => None,
            })
            .collect();
        for errno in errnos {
            let mut rules = RuleMap::new();
            for (nr, action, rule) in &resolved {
                if *action == Action::Errno(errno) {
                    push_rule(&mut rules, *nr, rule.clone());
                }
            }
            filters.push(self.build(
                arch,
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(errno as u32),
            )?);
        }

        // Explicit kills, needed only when the default is an errno.
        if matches!(self.default_action, Action::Errno(_)) {
            let mut rules = RuleMap::new();
            for (nr, action, rule) in &resolved {
                if *action == Action::Kill {
                    push_rule(&mut rules, *nr, rule.clone());
                }
            }
            if !rules.is_empty() {
                filters.push(self.build(
                    arch,
                    rules,
                    SeccompAction::Allow,
                    SeccompAction::Trace(KILL_PLACEHOLDER & 0xffff),
                )?);
            }
        }

        // Rewrite the kill placeholder; the filter holding it gets the
        // listener. At most one filter can hold it (see above), and the kernel
        // allows only one listener per filter chain.
        let mut compiled = Vec::new();
        for mut program in filters {
            let mut has_kill = false;
            for insn in program.iter_mut() {
                if insn.code == BPF_RET_K && insn.k == KILL_PLACEHOLDER {
                    insn.k = kill_verdict;
                    has_kill = true;
                }
            }
            compiled.push(CompiledFilter {
                listener: has_kill && user_notif,
                program,
            });
        }
        // Install order: the listener filter last, so that all filters are in
        // place before the descriptor exists.
        compiled.sort_by_key(|f| f.listener);

        if exec_tokens > 1 {
            return Err(PolicyError::Profile {
                profile: self.name.clone(),
                reason: "`$exec_path` may appear in one condition only".into(),
            });
        }
        Ok(CompiledProfile {
            name: self.name.clone(),
            filters: compiled,
            exec_token: exec_tokens == 1,
        })
    }

    fn condition(&self, index: usize, cond: &ArgCondition) -> Result<(SeccompCondition, bool), PolicyError> {
        let (value, token) = self.value(index, &cond.value)?;
        // The exec token is a pointer: always compared on 64 bits.
        let len = if cond.wide || token {
            SeccompCmpArgLen::Qword
        } else {
            SeccompCmpArgLen::Dword
        };
        let op = match cond.op {
            ArgOp::Eq => SeccompCmpOp::Eq,
            ArgOp::Ne => SeccompCmpOp::Ne,
            ArgOp::MaskedEq => {
                let mask = cond
                    .mask
                    .as_ref()
                    .ok_or_else(|| self.rule_error(index, "`masked_eq` needs a `mask`"))?;
                let (mask, _) = self.value(index, mask)?;
                SeccompCmpOp::MaskedEq(mask)
            }
        };
        if token && cond.op != ArgOp::Eq {
            return Err(self.rule_error(index, "`$exec_path` only works with `eq`"));
        }
        let c = SeccompCondition::new(cond.index, len, op, value)
            .map_err(|e| self.rule_error(index, e.to_string()))?;
        Ok((c, token))
    }

    fn value(&self, index: usize, value: &Value) -> Result<(u64, bool), PolicyError> {
        match value {
            Value::Number(n) => Ok((*n, false)),
            Value::Symbol(s) if s == "$exec_path" => Ok((EXEC_TOKEN, true)),
            Value::Symbol(s) => {
                let mut acc = 0u64;
                for part in s.split('|').map(str::trim) {
                    acc |= symbol(part)
                        .ok_or_else(|| self.rule_error(index, format!("unknown constant `{part}`")))?;
                }
                Ok((acc, false))
            }
        }
    }

    fn build(
        &self,
        arch: TargetArch,
        rules: RuleMap,
        mismatch: SeccompAction,
        matched: SeccompAction,
    ) -> Result<BpfProgram, PolicyError> {
        let filter = SeccompFilter::new(into_seccompiler(rules), mismatch, matched, arch).map_err(|e| {
            PolicyError::Compile {
                profile: self.name.clone(),
                reason: e.to_string(),
            }
        })?;
        filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| PolicyError::Compile {
                profile: self.name.clone(),
                reason: e.to_string(),
            })
    }
}

/// Rules per syscall number; `None` means "unconditionally", which absorbs
/// any conditional rule for the same syscall.
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn push_rule(map: &mut RuleMap, nr: i64, rule: Option<SeccompRule>) {
    match rule {
        None => {
            map.insert(nr, None);
        }
        Some(rule) => {
            if let Some(rules) = map.entry(nr).or_insert_with(|| Some(Vec::new())) {
                rules.push(rule);
            }
        }
    }
}

/// seccompiler reads an empty rule list as "matches whatever the arguments".
fn into_seccompiler(map: RuleMap) -> BTreeMap<i64, Vec<SeccompRule>> {
    map.into_iter()
        .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
        .collect()
}

fn native_arch() -> Option<TargetArch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(TargetArch::x86_64),
        "aarch64" => Some(TargetArch::aarch64),
        "riscv64" => Some(TargetArch::riscv64),
        _ => None,
    }
}

/// One BPF program ready to install.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    /// The program.
    pub program: BpfProgram,
    /// Install with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
    pub listener: bool,
}

/// A profile compiled for this architecture.
#[derive(Debug, Clone)]
pub struct CompiledProfile {
    /// Profile name.
    pub name: String,
    /// Filters in install order.
    pub filters: Vec<CompiledFilter>,
    /// The profile pins `execve` to the jail's own exec (see `$exec_path`).
    pub exec_token: bool,
}

impl CompiledProfile {
    /// A copy whose `$exec_path` conditions compare against `addr`.
    pub fn with_exec_path(&self, addr: u64) -> CompiledProfile {
        let mut out = self.clone();
        if !self.exec_token {
            return out;
        }
        let (token_hi, token_lo) = ((EXEC_TOKEN >> 32) as u32, EXEC_TOKEN as u32);
        let (hi, lo) = ((addr >> 32) as u32, addr as u32);
        for filter in &mut out.filters {
            for insn in filter.program.iter_mut() {
                if insn.code == BPF_JMP_JEQ_K {
                    if insn.k == token_hi {
                        insn.k = hi;
                    } else if insn.k == token_lo {
                        insn.k = lo;
                    }
                }
            }
        }
        out
    }

    /// Total instruction count, for diagnostics.
    pub fn len(&self) -> usize {
        self.filters.iter().map(|f| f.program.len()).sum()
    }

    /// True when no filter has any instruction (never for a valid profile).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Count instructions equal to `insn` (tests).
#[cfg(test)]
fn count(program: &[seccompiler::sock_filter], code: u16, k: u32) -> usize {
    program.iter().filter(|i| i.code == code && i.k == k).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str) -> Profile {
        Profile::load(name).unwrap()
    }

    #[test]
    fn builtin_profiles_compile_and_every_rule_has_a_comment() {
        for (name, _) in BUILTIN_PROFILES {
            let p = builtin(name);
            assert!(p.rules.iter().all(|r| !r.comment.trim().is_empty()));
            for notif in [true, false] {
                let c = p.compile(notif).unwrap();
                assert!(!c.is_empty(), "{name}");
                assert!(c.len() < 4096, "{name}: BPF programs are capped at 4096 insns");
                let listeners = c.filters.iter().filter(|f| f.listener).count();
                assert_eq!(listeners, usize::from(notif), "{name}");
                // No placeholder survives compilation.
                for f in &c.filters {
                    assert_eq!(count(&f.program, BPF_RET_K, KILL_PLACEHOLDER), 0);
                }
            }
        }
    }

    #[test]
    fn kill_becomes_notify_or_kill_process_but_arch_mismatch_always_kills() {
        let p = builtin("strict");
        let notif = p.compile(true).unwrap();
        let kill = p.compile(false).unwrap();
        let notif_rets: usize = notif
            .filters
            .iter()
            .map(|f| count(&f.program, BPF_RET_K, RET_USER_NOTIF))
            .sum();
        assert!(notif_rets > 0);
        // Every filter starts with an arch check whose failure kills.
        for f in notif.filters.iter().chain(&kill.filters) {
            assert!(count(&f.program, BPF_RET_K, RET_KILL_PROCESS) >= 1);
        }
    }

    #[test]
    fn exec_token_is_patched_to_the_given_address() {
        let c = builtin("strict").compile(true).unwrap();
        assert!(c.exec_token);
        let hi = (EXEC_TOKEN >> 32) as u32;
        let lo = EXEC_TOKEN as u32;
        let before: usize = c
            .filters
            .iter()
            .map(|f| count(&f.program, BPF_JMP_JEQ_K, lo))
            .sum();
        assert_eq!(before, 1);
        let patched = c.with_exec_path(0x0000_7fff_1234_5678);
        for f in &patched.filters {
            assert_eq!(count(&f.program, BPF_JMP_JEQ_K, hi), 0);
            assert_eq!(count(&f.program, BPF_JMP_JEQ_K, lo), 0);
        }
        let found: usize = patched
            .filters
            .iter()
            .map(|f| count(&f.program, BPF_JMP_JEQ_K, 0x1234_5678))
            .sum();
        assert_eq!(found, 1);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_rule_named() {
        let cases = [
            (
                r#"{"name":"x","description":"","default_action":"allow","rules":[]}"#,
                "default_action must deny",
            ),
            (
                r#"{"name":"x","description":"","default_action":"EPERM","rules":[{"syscall":"nope","comment":"c"}]}"#,
                "rule 0 (`nope`): no such syscall",
            ),
            (
                r#"{"name":"x","description":"","default_action":"EPERM","rules":[{"syscall":"read","comment":" "}]}"#,
                "rule 0 (`read`): every rule needs a comment",
            ),
            (
                r#"{"name":"x","description":"","default_action":"EPERM","rules":[{"syscall":"read","comment":"c"}]}"#,
                "`execve` must be allowed",
            ),
            (
                r#"{"name":"x","description":"","default_action":"EPERM","rules":[{"syscall":"socket","comment":"c","args":[{"index":0,"op":"eq","value":"AF_BOGUS"}]}]}"#,
                "unknown constant `AF_BOGUS`",
            ),
        ];
        for (json, expected) in cases {
            let err = Profile::from_json("t", json).and_then(|p| p.compile(true).map(|_| ()));
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
    fn names_syscalls() {
        assert_eq!(syscall_name(syscalls::Sysno::ptrace.id() as i64), "ptrace");
        assert_eq!(syscall_name(99_999), "syscall_99999");
    }
}
