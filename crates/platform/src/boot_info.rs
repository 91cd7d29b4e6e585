//! The facts of this boot that the banner, the workloads and the summary need: the machine (from
//! the DTB), the EL the kernel was entered at, the CPU's features.

use crate::dtb::PlatformInfo;
use broadside_arch::aarch64::cpu::CpuFeatures;
use spin::Once;

/// Facts about this boot.
#[derive(Debug)]
pub struct BootInfo {
    /// What the DTB says the machine is.
    pub platform: PlatformInfo,
    /// The exception level QEMU entered the kernel at (1, or 2 with `virtualization=on`).
    pub boot_el: u64,
    /// The CPU's ID-register features (TLBI range, ASID width, ...).
    pub features: CpuFeatures,
    /// PSCI's version (major, minor), if the firmware answered.
    pub psci_version: Option<(u16, u16)>,
}

static BOOT: Once<BootInfo> = Once::new();

/// Records the boot facts (once, on the boot CPU, after the kernel arguments are parsed).
pub fn set(info: BootInfo) -> &'static BootInfo {
    BOOT.call_once(|| info)
}

/// The boot facts. Panics if called before [`set`].
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().expect("boot info not ready")
}

/// The boot facts, if they have been recorded (exit paths can run before).
pub fn boot_info_opt() -> Option<&'static BootInfo> {
    BOOT.get()
}
