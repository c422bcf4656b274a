//! Both lookups — `openat2` and the `O_NOFOLLOW` walk used without it — on the same tree.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// `certs/` (the certificate directory) and `outside/` in a fresh temp directory.
fn tree() -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!(
        "agent-open-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&base);
    let (certs, outside) = (base.join("certs"), base.join("outside"));
    for dir in [
        &certs,
        &outside,
        &certs.join("sub"),
        &certs.join("..2024_01"),
    ] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    let (certs, outside) = (
        certs.canonicalize().expect("certs"),
        outside.canonicalize().expect("outside"),
    );
    let write = |path: PathBuf, text: &str| std::fs::write(path, text).expect("write");
    write(certs.join("a.p12"), "A");
    write(certs.join("..2024_01/tls.p12"), "K1");
    write(outside.join("secret"), "S");
    let link = |target: PathBuf, name: &str| symlink(target, certs.join(name)).expect("symlink");
    link(certs.join("a.p12"), "sub/inside.p12");
    link("../a.p12".into(), "sub/rel.p12");
    link(outside.join("secret"), "escape.p12");
    link(outside.join("missing"), "escape-missing.p12");
    link("../outside/secret".into(), "climb.p12");
    link("../outside/missing".into(), "climb-missing.p12");
    link(outside.clone(), "out-dir");
    link("loop".into(), "loop");
    link("..2024_01".into(), "..data");
    link("..data/tls.p12".into(), "tls.p12");
    (certs, outside)
}

fn text(fd: OwnedFd) -> String {
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .expect("read");
    text
}

/// What each lookup gives: the file's text, or the refusal.
fn both(roots: &Roots, path: &str) -> [Result<String, Refusal>; 2] {
    let path = Path::new(path);
    [
        roots.open_beneath(0, path, READ).map(text),
        roots.walk(0, path, READ).map(text),
    ]
}

#[test]
fn symlinks_that_stay_inside_resolve_and_every_way_out_is_refused() {
    let (certs, _outside) = tree();
    let roots = Roots::open(vec![certs].into());
    let found = |text: &str| Ok(text.to_owned());
    let cases = [
        ("a.p12", found("A")),
        ("./a.p12", found("A")),
        ("sub/../a.p12", found("A")),
        ("sub/inside.p12", found("A")),
        ("sub/rel.p12", found("A")),
        ("tls.p12", found("K1")),
        ("..data/tls.p12", found("K1")),
        ("escape.p12", Err(Refusal::Outside)),
        ("escape-missing.p12", Err(Refusal::Outside)),
        ("climb.p12", Err(Refusal::Outside)),
        ("climb-missing.p12", Err(Refusal::Outside)),
        ("out-dir/secret", Err(Refusal::Outside)),
        ("out-dir/missing", Err(Refusal::Outside)),
        ("../outside/secret", Err(Refusal::Outside)),
        ("../outside/missing", Err(Refusal::Outside)),
        ("loop", Err(Refusal::Outside)),
        ("missing.p12", Err(Refusal::Missing)),
        ("sub/missing.p12", Err(Refusal::Missing)),
        ("a.p12/x", Err(Refusal::Missing)),
    ];
    for (path, expected) in cases {
        assert_eq!(both(&roots, path), [expected.clone(), expected], "{path}");
    }
}

#[test]
fn a_kubernetes_style_data_swap_rotates() {
    let (certs, _outside) = tree();
    let roots = Roots::open(vec![certs.clone()].into());
    assert_eq!(both(&roots, "tls.p12"), [Ok("K1".into()), Ok("K1".into())]);
    std::fs::create_dir(certs.join("..2024_02")).expect("dir");
    std::fs::write(certs.join("..2024_02/tls.p12"), "K2").expect("write");
    symlink("..2024_02", certs.join("..data_tmp")).expect("symlink");
    std::fs::rename(certs.join("..data_tmp"), certs.join("..data")).expect("swap");
    std::fs::remove_dir_all(certs.join("..2024_01")).expect("old");
    assert_eq!(both(&roots, "tls.p12"), [Ok("K2".into()), Ok("K2".into())]);
}

#[test]
fn an_absolute_symlink_may_land_in_another_certificate_directory() {
    let (certs, outside) = tree();
    symlink(outside.join("secret"), certs.join("other.p12")).expect("symlink");
    let roots = Roots::open(vec![certs, outside].into());
    assert_eq!(both(&roots, "other.p12"), [Ok("S".into()), Ok("S".into())]);
}

#[test]
fn lexical_checks() {
    let dirs = [PathBuf::from("/certs"), PathBuf::from("/more/certs")];
    let inside = |path: &str| lexically_inside(&dirs, Path::new(path));
    assert_eq!(inside("/certs/a.p12"), Some((0, "a.p12".into())));
    assert_eq!(
        inside("/certs/sub/../a.p12"),
        Some((0, "sub/../a.p12".into()))
    );
    assert_eq!(inside("/more/certs/./a.p12"), Some((1, "a.p12".into())));
    assert_eq!(inside("/certs/../etc/passwd"), None);
    assert_eq!(inside("/certs/sub/../../a.p12"), None);
    assert_eq!(inside("/certsx/a.p12"), None);
    assert_eq!(inside("/etc/passwd"), None);
    assert!(climbs_out(Path::new("../a")));
    assert!(climbs_out(Path::new("sub/../../a")));
    assert!(!climbs_out(Path::new("sub/../a")));
    assert_eq!(
        normalize(Path::new("sub/./../a.p12")),
        PathBuf::from("a.p12")
    );
}
