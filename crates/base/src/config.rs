//! Build-time limits shared by every layer.

/// The most CPUs broadside brings online: every vCPU QEMU `virt` with GICv3 allows (512; its
/// redistributors for CPUs 123 and up sit in a second region, which the GIC layer covers).
/// Per-CPU statics are sized by it, so each CPU costs the image's `.bss` a few hundred bytes;
/// stacks are allocated at bring-up for the CPUs the DTB names.
pub const MAX_CPUS: usize = 512;
