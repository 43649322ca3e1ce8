//! SIGINT, SIGTERM and SIGHUP (a dropped SSH session) set one flag that the dashboard
//! and the headless loop poll: the workers stop, the record is flushed and marked
//! interrupted. A second SIGINT exits at once (status 130): the user insists. SIGTERM
//! and SIGHUP never do: a dropped SSH session can deliver SIGHUP twice (the kernel's
//! hangup and the multiplexer's), and the record must still be flushed.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn install() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    // Registered first, so it only fires when the flag is already set.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag.clone())?;
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}
