//! Any bytes as a package: the archive reader and the whole package check
//! answer with entries or located problems, never a panic, a hang or an
//! allocation past the caps; what they accept has only safe paths, with
//! nothing in them that needs escaping to be shown.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = warden_package::ArchiveLimits::default();
    if let Ok(entries) = warden_package::archive::read(data, &limits) {
        let mut total = 0u64;
        for e in &entries {
            assert!(!e.path.starts_with('/') && !e.path.split('/').any(|c| c == ".." || c.is_empty()));
            // Nothing in an accepted name needs escaping to be shown.
            assert_eq!(warden_package::archive::escape(&e.path), e.path.as_str());
            total += e.data.len() as u64;
        }
        assert!(entries.len() <= limits.max_entries);
        assert!(total <= limits.max_unpacked_bytes);
    }
    let _ = warden_package::open(data, &Default::default());
});
