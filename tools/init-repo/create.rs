//! Creating the repository files.

use common::backend::FileType;
use common::chunker::Polynomial;
use common::cli::RepoArgs;
use common::config::Config;
use common::crypto::Key;
use common::error::{Error, Result, ResultExt};
use common::key::{default_params, KeyFile};
use common::{sys, Id};

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let version = match args.repository_version.as_str() {
        "1" => 1,
        "2" | "stable" | "latest" => 2,
        v => return Err(Error::Usage(format!("unknown repository version {v:?} (1 or 2)"))),
    };
    let pol = if args.copy_chunker_params {
        let from = RepoArgs {
            location: common::cli::RepoLocation { repo: args.from_repo.clone() },
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
    // Ask for the password before creating anything, so a refusal leaves nothing behind.
    let password = args.repo.password()?;
    backend.create()?;
    let master = Key::random();
    let config = Config::new(version, pol.0);
    let sealed = config.encode(&master);
    backend.write(FileType::Config, "", &mut &sealed[..], sealed.len() as u64)?;
    let (bytes, _) =
        KeyFile::create(&master, &password, default_params(), &sys::username(), &sys::hostname())?;
    let name = Id::hash(&bytes).to_hex();
    backend.write(FileType::Key, &name, &mut &bytes[..], bytes.len() as u64)?;
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
