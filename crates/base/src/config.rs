//! Build-time limits shared by every layer.

/// The most CPUs broadside brings online. QEMU `virt` with GICv3 places at most 123
/// redistributors in its first region; larger machines are rejected at boot with exit code 2.
pub const MAX_CPUS: usize = 256;
