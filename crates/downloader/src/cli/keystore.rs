//! `downloader keystore inspect` and `downloader keystore convert`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use keystore::{Keystore, Options, TrustAnchors};
use time::OffsetDateTime;

use crate::cli::args::{ConvertArgs, InspectArgs, OutputFormat, StoreArgs};
use crate::cli::{Failure, output, secret};

/// Prints every entry of a keystore with its certificates and lint findings.
pub(crate) fn inspect(args: &InspectArgs) -> Result<ExitCode, Failure> {
    let store = open(&args.store)?;
    let report = keystore::inspect(
        &store,
        args.store.alias.as_deref(),
        OffsetDateTime::now_utc(),
    )?;
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        output::json::inspect(&mut stdout, &args.store.file, &report)
    } else {
        output::human::inspect(&mut stdout, &args.store.file, &report)
    };
    finish(written)
}

/// Converts a keystore to PEM or PKCS#12.
pub(crate) fn convert(args: &ConvertArgs) -> Result<ExitCode, Failure> {
    let store = open(&args.store)?;
    let has_key = !store.private_key_aliases().is_empty()
        || store
            .entries()
            .iter()
            .any(|entry| entry.kind() == keystore::EntryKind::PrivateKey);
    let bytes: Vec<u8> = if has_key {
        let identity = store.identity(args.store.alias.as_deref())?;
        match args.to {
            OutputFormat::Pem => keystore::identity_to_pem(&identity)?.as_bytes().to_vec(),
            OutputFormat::Pkcs12 => {
                let password = out_password(args)?;
                let alias = args
                    .out_alias
                    .as_deref()
                    .or(identity.alias())
                    .unwrap_or("client");
                keystore::identity_to_pkcs12(&identity, alias, &password)?
            }
        }
    } else {
        let anchors: TrustAnchors = store.trust_anchors()?;
        match args.to {
            OutputFormat::Pem => keystore::trust_to_pem(&anchors).into_bytes(),
            OutputFormat::Pkcs12 => keystore::trust_to_pkcs12(&anchors, &out_password(args)?)?,
        }
    };
    write_private(&args.out, &bytes, args.force)?;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "wrote {} ({} bytes)",
        args.out.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn open(args: &StoreArgs) -> Result<Keystore, Failure> {
    let options = Options {
        store_password: secret::resolve(
            args.password.as_ref(),
            args.password_env.as_ref(),
            args.password_file.as_ref(),
        )?,
        key_password: secret::resolve(
            args.key_password.as_ref(),
            args.key_password_env.as_ref(),
            None,
        )?,
        ..Options::default()
    };
    let bytes = read(&args.file)?;
    let store = match &args.key {
        Some(key_path) => Keystore::open_pair(&bytes, &read(key_path)?, &options)?,
        None => Keystore::open(&bytes, &options)?,
    };
    Ok(store)
}

fn out_password(args: &ConvertArgs) -> Result<keystore::Password, Failure> {
    secret::resolve(
        args.out_password.as_ref(),
        args.out_password_env.as_ref(),
        None,
    )?
    .or(secret::resolve(
        args.store.password.as_ref(),
        args.store.password_env.as_ref(),
        args.store.password_file.as_ref(),
    )?)
    .ok_or_else(|| Failure::usage("PKCS#12 output needs a password: give --out-password"))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| Failure::io(path, &error))
}

/// Writes with mode 0600: the output may hold an unencrypted private key.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), Failure> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .map_err(|error| Failure::io(path, &error))?;
    file.write_all(bytes)
        .map_err(|error| Failure::io(path, &error))
}

/// A closed stdout (`| head`) is not an error.
fn finish(written: std::io::Result<()>) -> Result<ExitCode, Failure> {
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(Failure::io(Path::new("<stdout>"), &error)),
    }
}
