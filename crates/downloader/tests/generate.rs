//! `downloader completions` and `downloader man`, checked with the real tools: every script
//! passes its shell's syntax check (bash, zsh and fish are required: scripts/test installs them)
//! and every man page renders with groff and man-db without a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_downloader");

/// The top-level commands every script and the main page must name.
const COMMANDS: &[&str] = &["keystore", "fetch", "serve", "submit", "completions", "man"];

/// Pages `man --dir` must write (one per command; more appear as commands are added).
const PAGES: &[&str] = &[
    "downloader.1",
    "downloader-keystore.1",
    "downloader-keystore-inspect.1",
    "downloader-keystore-convert.1",
    "downloader-fetch.1",
    "downloader-serve.1",
    "downloader-submit.1",
    "downloader-completions.1",
    "downloader-man.1",
];

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "downloader-generate-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn downloader(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// Stdout of a successful `downloader ARGS`.
fn generated(args: &[&str]) -> String {
    let output = downloader(args);
    assert!(
        output.status.success(),
        "downloader {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs `tool ARGS` and fails the test with its output unless it succeeds silently on stderr.
fn check_with(tool: &str, args: &[&str], file: &Path) {
    let output = Command::new(tool)
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("{tool} does not run ({error}): scripts/test installs it, so install it")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{tool} {args:?} {}: {}\n{stderr}",
        file.display(),
        output.status
    );
}

/// Writes the completion script for `shell` and checks that it names every command.
fn script(shell: &str, file_name: &str, dir: &Path) -> PathBuf {
    let text = generated(&["completions", shell]);
    for command in COMMANDS {
        assert!(text.contains(command), "{shell} script lacks '{command}'");
    }
    let path = dir.join(file_name);
    std::fs::write(&path, text).expect("write the script");
    path
}

#[test]
fn bash_completion_is_valid_bash() {
    let dir = temp_dir("bash");
    let path = script("bash", "downloader.bash", &dir);
    check_with("bash", &["-n"], &path);
    // Sourcing it registers the completion function for the binary's name.
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p downloader",
            path.display()
        ))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("downloader"),
        "complete -p: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn zsh_completion_is_valid_zsh() {
    let dir = temp_dir("zsh");
    let path = script("zsh", "_downloader", &dir);
    check_with("zsh", &["-n"], &path);
}

#[test]
fn fish_completion_is_valid_fish() {
    let dir = temp_dir("fish");
    let path = script("fish", "downloader.fish", &dir);
    check_with("fish", &["--no-execute"], &path);
}

#[test]
fn elvish_and_powershell_scripts_name_every_command() {
    let dir = temp_dir("others");
    script("elvish", "downloader.elv", &dir);
    script("powershell", "downloader.ps1", &dir);
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let output = downloader(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(output.stdout.is_empty());
}

/// Renders `page` with groff (every warning on) and man-db, and returns the text.
fn render(page: &Path) -> String {
    check_with("groff", &["-man", "-Tutf8", "-ww", "-z"], page);
    let output = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::null())
        .output()
        .expect("man (man-db) runs: scripts/test installs it");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "man -l {}: {}\n{stderr}",
        page.display(),
        output.status
    );
    String::from_utf8(output.stdout).expect("UTF-8 page")
}

#[test]
fn main_man_page_renders_and_lists_the_commands() {
    let dir = temp_dir("man");
    let roff = generated(&["man"]);
    assert!(roff.contains(".TH downloader 1"), "{roff}");
    let path = dir.join("downloader.1");
    std::fs::write(&path, roff).expect("write the page");
    let text = render(&path);
    for command in COMMANDS {
        assert!(
            text.contains(&format!("downloader-{command}(1)")),
            "the main page does not point to downloader-{command}(1):\n{text}"
        );
    }
    assert!(!text.contains("downloader-help"), "{text}");
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = temp_dir("man-dir").join("man1");
    let listing = generated(&["man", "--dir", dir.to_str().expect("UTF-8 path")]);
    let written: Vec<String> = std::fs::read_dir(&dir)
        .expect("the directory was created")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for page in PAGES {
        assert!(
            written.iter().any(|name| name == page),
            "no {page}: {written:?}"
        );
    }
    assert!(
        !written
            .iter()
            .any(|name| name.starts_with("downloader-help")),
        "clap's help subcommand got a page: {written:?}"
    );
    assert_eq!(listing.lines().count(), written.len(), "{listing}");
    let main = render(&dir.join("downloader.1"));
    for page in &written {
        assert!(
            listing.contains(&dir.join(page).display().to_string()),
            "{listing}"
        );
        let text = render(&dir.join(page));
        assert!(text.contains("SYNOPSIS"), "{page}:\n{text}");
        // Every top-level command's page is named on the main page.
        let name = page.trim_end_matches(".1");
        if name.matches('-').count() == 1 {
            assert!(
                main.contains(&format!("{name}(1)")),
                "main page lacks {name}(1)"
            );
        }
    }
    let serve = render(&dir.join("downloader-serve.1"));
    assert!(serve.contains("--check"), "{serve}");
    assert!(serve.contains("downloader serve"), "{serve}");
}
