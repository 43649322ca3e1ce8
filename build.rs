//! Records `git describe` of the source tree, when there is one, for the run record.
use std::process::Command;

fn git(args: &[&str]) -> Option<std::process::Output> {
    Command::new("git").args(args).output().ok()
}

fn main() {
    // Plumbing only: `git describe --dirty` refreshes git's index and writes it back,
    // and a written index is a change of a file watched below, so the next cargo
    // command (the tests after the main job's build) would run this again and rebuild
    // the crate. `diff-index` reads the index without writing it.
    let describe = git(&["describe", "--always", "--tags"])
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(mut d) = describe {
        if git(&["diff-index", "--quiet", "HEAD", "--"]).is_some_and(|o| o.status.code() == Some(1))
        {
            d.push_str("-dirty");
        }
        println!("cargo:rustc-env=NOISELAB_GIT_DESCRIBE={d}");
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
