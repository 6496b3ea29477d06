//! Where S3 credentials and the region come from, in restic's order (minio-go's chain): the
//! environment first (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then
//! the AWS tools' shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`), profile `AWS_PROFILE` or `default`. The region: `AWS_DEFAULT_REGION`,
//! else the profile's `region` in the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`,
//! where a profile other than `default` is the section `[profile NAME]`).

use std::path::PathBuf;

use super::sigv4::{Credentials, SecretKey};
use crate::error::{Error, Result};

/// The access key id in the environment.
pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// The secret access key in the environment (never from the command line).
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
/// The session token of temporary credentials, if any.
pub const SESSION_TOKEN_ENV: &str = "AWS_SESSION_TOKEN";
/// The region, unless `-o s3.region=` says otherwise.
pub const REGION_ENV: &str = "AWS_DEFAULT_REGION";
/// The profile of the files to use (default `default`).
pub const PROFILE_ENV: &str = "AWS_PROFILE";
/// The shared credentials file, instead of `~/.aws/credentials`.
pub const CREDENTIALS_FILE_ENV: &str = "AWS_SHARED_CREDENTIALS_FILE";
/// The config file, instead of `~/.aws/config`.
pub const CONFIG_FILE_ENV: &str = "AWS_CONFIG_FILE";

/// What the environment and the files say.
#[derive(Debug)]
pub struct Found {
    /// `None` when neither the environment nor the credentials file has a key id and secret.
    pub creds: Option<Credentials>,
    pub region: Option<String>,
    /// Where to look, for the message when there are no credentials.
    pub hint: String,
}

/// Looks up credentials and region with `env` as the environment (non-empty values only).
pub fn find(env: &dyn Fn(&str) -> Option<String>) -> Result<Found> {
    let profile = env(PROFILE_ENV).unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, name: &str| {
        env(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let creds_file = file(CREDENTIALS_FILE_ENV, "credentials");
    let config_file = file(CONFIG_FILE_ENV, "config");

    let creds = match (env(ACCESS_KEY_ENV), env(SECRET_KEY_ENV)) {
        (Some(id), Some(secret)) => Some(Credentials {
            access_key_id: id,
            secret: SecretKey::new(secret),
            session_token: env(SESSION_TOKEN_ENV).map(SecretKey::new),
        }),
        _ => match &creds_file {
            Some(path) => read(path)?.and_then(|text| {
                let s = section(&text, &profile);
                let get = |k: &str| {
                    s.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
                };
                Some(Credentials {
                    access_key_id: get("aws_access_key_id")?,
                    secret: SecretKey::new(get("aws_secret_access_key")?),
                    session_token: get("aws_session_token").map(SecretKey::new),
                })
            }),
            None => None,
        },
    };

    let region = match env(REGION_ENV) {
        Some(r) => Some(r),
        None => match &config_file {
            Some(path) => read(path)?.and_then(|text| {
                let name = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
                section(&text, &name)
                    .into_iter()
                    .find(|(k, _)| k == "region")
                    .map(|(_, v)| v)
                    .filter(|v| !v.is_empty())
            }),
            None => None,
        },
    };

    let hint = match &creds_file {
        Some(p) => format!(
            "set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or put them in profile {profile} of {}",
            p.display()
        ),
        None => format!("set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}"),
    };
    Ok(Found { creds, region, hint })
}

/// The text of a file, `None` if there is none; a file that is there but cannot be read is an
/// error (its content never goes into the message: it holds secrets).
fn read(path: &std::path::Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("{}", path.display()), e)),
    }
}

/// The `key = value` pairs of `[name]` in an INI file as the AWS tools write them: keys
/// lower-cased, values trimmed, comments (`#`, `;`) and other sections skipped.
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = head.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned().filter(|v| !v.is_empty())
    }

    #[test]
    fn sections_of_ini_files() {
        let text =
            "# comment\n[default]\naws_access_key_id = AKID\n; other\nAWS_Secret_Access_Key=s3cr=t\n\n\
                    [profile  work]\nregion = eu-west-1\n[work]\naws_access_key_id=W\n";
        assert_eq!(
            section(text, "default"),
            [
                ("aws_access_key_id".to_string(), "AKID".to_string()),
                ("aws_secret_access_key".into(), "s3cr=t".into())
            ]
        );
        assert_eq!(section(text, "profile work"), [("region".to_string(), "eu-west-1".to_string())]);
        assert_eq!(section(text, "work"), [("aws_access_key_id".to_string(), "W".to_string())]);
        assert!(section(text, "none").is_empty());
    }

    #[test]
    fn environment_then_files() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id=FILEID\naws_secret_access_key=file-secret\n\
             [other]\naws_access_key_id=OTHER\naws_secret_access_key=other-secret\naws_session_token=tok\n\
             [half]\naws_access_key_id=HALF\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion=eu-central-1\n[profile other]\nregion=ap-south-1\n",
        )
        .unwrap();
        let h = home.path().to_str().unwrap();

        let f = find(&with(&[("HOME", h)])).unwrap();
        let c = f.creds.unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret.expose()), ("FILEID", "file-secret"));
        assert!(c.session_token.is_none());
        assert_eq!(f.region.as_deref(), Some("eu-central-1"));

        let f = find(&with(&[("HOME", h), ("AWS_PROFILE", "other")])).unwrap();
        let c = f.creds.unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token.unwrap().expose()), ("OTHER", "tok"));
        assert_eq!(f.region.as_deref(), Some("ap-south-1"));

        // The environment wins, for the keys and for the region; a half-set environment does not.
        let env = [("HOME", h), ("AWS_ACCESS_KEY_ID", "ENVID"), ("AWS_SECRET_ACCESS_KEY", "env-secret")];
        let f = find(&with(&env)).unwrap();
        assert_eq!(f.creds.unwrap().access_key_id, "ENVID");
        let f =
            find(&with(&[("HOME", h), ("AWS_ACCESS_KEY_ID", "ENVID"), ("AWS_DEFAULT_REGION", "us-west-2")]))
                .unwrap();
        assert_eq!(f.creds.unwrap().access_key_id, "FILEID");
        assert_eq!(f.region.as_deref(), Some("us-west-2"));

        // A profile without both keys, or no such profile, or no files: no credentials.
        let f = find(&with(&[("HOME", h), ("AWS_PROFILE", "half")])).unwrap();
        assert!(f.creds.is_none() && f.region.is_none());
        assert!(f.hint.contains("profile half") && f.hint.contains(".aws/credentials"), "{}", f.hint);
        assert!(find(&with(&[("HOME", "/nonexistent")])).unwrap().creds.is_none());

        // Files named by the environment instead of the ones in HOME.
        let other = home.path().join("creds");
        std::fs::write(&other, "[default]\naws_access_key_id=ELSE\naws_secret_access_key=x\n").unwrap();
        let f = find(&with(&[
            ("HOME", h),
            ("AWS_SHARED_CREDENTIALS_FILE", other.to_str().unwrap()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ]))
        .unwrap();
        assert_eq!(f.creds.unwrap().access_key_id, "ELSE");
        assert!(f.region.is_none());
        let dbg = format!("{:?}", find(&with(&[("HOME", h)])).unwrap());
        assert!(!dbg.contains("file-secret"), "{dbg}");
    }
}
