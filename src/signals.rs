//! SIGINT, SIGTERM and SIGHUP (a dropped SSH session) set one flag that the dashboard
//! and the headless loop poll: the workers stop, the record is flushed and marked
//! interrupted. A second signal of the same kind exits at once (status 130).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn install() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // Registered first, so it only fires when the flag is already set.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}
