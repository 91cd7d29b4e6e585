//! Requests other CPUs make of this one while it waits: the IPI baseline's shootdowns and
//! syncs. A CPU that spins for others (a grace period, a lock-free wait) must serve them, or two
//! CPUs that wait for each other's acknowledgement deadlock. What the requests are is none of
//! this layer's business: a higher layer installs the function that serves them
//! ([`set_request_server`]), and every wait here calls [`serve_requests`].

use spin::Once;

static REQUEST_SERVER: Once<fn()> = Once::new();

/// Installs the function that serves requests aimed at this CPU while it waits (once, at boot).
pub fn set_request_server(serve: fn()) {
    REQUEST_SERVER.call_once(|| serve);
}

/// Serves whatever other CPUs asked of this one (nothing before a server is installed).
pub fn serve_requests() {
    if let Some(serve) = REQUEST_SERVER.get() {
        serve();
    }
}
