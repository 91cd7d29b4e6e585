//! The platform layer: what the machine is (DTB), how to talk (PL011 console and logging), and
//! what the user asked for (boot arguments).
pub mod bootargs;
#[cfg(target_arch = "aarch64")]
pub mod console;
#[cfg(target_arch = "aarch64")]
pub mod dtb;
#[cfg(target_arch = "aarch64")]
pub mod pl011;
