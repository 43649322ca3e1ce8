//! Records `git describe` of the source tree, when there is one, for the run record.
fn main() {
    // `--dirty` refreshes git's index and writes it back unless optional locks are off;
    // a written index is a change of a file watched below, so the next cargo command
    // (the tests after the main job's build) would run this again and rebuild the crate.
    let describe = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--tags"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(d) = describe {
        println!("cargo:rustc-env=NOISELAB_GIT_DESCRIBE={d}");
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
