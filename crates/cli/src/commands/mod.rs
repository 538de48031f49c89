//! One module per subcommand.

pub mod admin;
pub mod doctor;
pub mod plugin;
pub mod pool;
pub mod run;
pub mod serve;
pub mod session;
pub mod sse;
pub mod template;

/// `hint:` lines for an error, pointing at the next step.
pub fn hints_for(err: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    for cause in err.chain() {
        if let Some(jail) = cause.downcast_ref::<warden_jail::JailError>() {
            match jail {
                warden_jail::JailError::MissingFeatures(_) => {
                    hints.push("run `warden doctor` to see what the kernel lacks".into());
                }
                warden_jail::JailError::ProgramNotFound(_) => {
                    hints.push("give an absolute path, or bind its directory with `--ro-bind`".into());
                }
                warden_jail::JailError::NoFreeBox { .. } => {
                    hints.push("wait for running boxes to finish, or raise `--max-boxes`".into());
                }
                warden_jail::JailError::UnsafeStateDir(_) => {
                    hints.push("remove it, or choose another with `WARDEN_STATE_DIR`".into());
                }
                _ => {}
            }
        }
    }
    hints
}
