//! Creating the repository files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::backend::FileType;
use common::chunker::Polynomial;
use common::cli::RepoArgs;
use common::config::Config;
use common::crypto::Key;
use common::error::{Result, ResultExt};
use common::key::{default_params, KeyFile};
use common::{sys, Id};

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let version = args.repository_version;
    let pol = if args.copy_chunker_params {
        let from = RepoArgs {
            location: args.repo.location.elsewhere(args.from_repo.clone()),
            password_file: args.from_password_file.clone(),
            password_command: args.from_password_command.clone(),
            key_hint: None,
        };
        let other = from.open().context("--from-repo")?;
        Polynomial(other.config.chunker_polynomial)
    } else {
        Polynomial::random()
    };
    let backend = args.repo.backend()?;
    // Ask for the password and derive the key before creating anything, so that a refusal
    // or a failure there leaves nothing behind.
    let password = args.repo.new_password()?;
    let master = Key::random();
    let config = Config::new(version, pol.0);
    let sealed = config.encode(&master);
    let (bytes, _) =
        KeyFile::create(&master, &password, default_params(), &sys::username(), &sys::hostname())?;
    let name = Id::hash(&bytes).to_hex();

    let local = local_root(args)?;
    let dirs_before = local.as_deref().map(dirs_under).unwrap_or_default();
    // restic's order: the key, then the config. A config without a key would make the
    // repository impossible to create again and answer every password with "wrong password";
    // so if anything fails, what this run created goes again.
    let mut key_written = false;
    let made = backend.create().and_then(|()| {
        backend.write(FileType::Key, &name, &bytes).context("writing the key")?;
        key_written = true;
        backend.write(FileType::Config, "", &sealed).context("writing the config")
    });
    if let Err(e) = made {
        if key_written {
            let _ = backend.remove(FileType::Key, &name);
        }
        if let Some(root) = &local {
            remove_new_dirs(root, &dirs_before);
        }
        return Err(e);
    }
    common::cli::warn(
        "init-repo",
        format!(
            "created repository {} (format {version}) at {}",
            &config.id[..10.min(config.id.len())],
            backend.location()
        ),
    );
    Ok(())
}

/// The directory of a local repository (the only kind whose directories we can take back);
/// `None` for a repository behind a `scheme:` other than `local:`.
fn local_root(args: &Args) -> Result<Option<PathBuf>> {
    let loc = args.repo.location.location()?;
    if let Some(path) = loc.strip_prefix("local:") {
        return Ok(Some(PathBuf::from(path)));
    }
    let scheme = loc.find(':').is_some_and(|i| !loc[..i].contains('/'));
    Ok((!scheme).then(|| PathBuf::from(loc.as_ref())))
}

/// Every directory at or below `root` that exists now.
fn dirs_under(root: &Path) -> HashSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect()
}

/// Removes the directories below (and including) `root` that were not there before, deepest
/// first. Only empty ones go: anything another process put there stays.
fn remove_new_dirs(root: &Path, before: &HashSet<PathBuf>) {
    let now: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .contents_first(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    for d in now {
        if !before.contains(&d) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}
