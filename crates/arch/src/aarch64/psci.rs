//! PSCI through the smccc crate, over the conduit the DTB's `/psci` node names.

use smccc::psci;
use smccc::{Hvc, Smc};
use spin::Once;

/// How PSCI calls reach the firmware: HVC when QEMU boots us at EL1 (`-M virt`), SMC when it
/// boots us at EL2 (`-M virt,virtualization=on`, firmware emulated at EL3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `HVC #0`: firmware at EL2 (QEMU virt entered at EL1).
    Hvc,
    /// `SMC #0`: firmware at EL3 (QEMU virt with `virtualization=on`).
    Smc,
}

impl Conduit {
    /// Parses the DTB `/psci` `method` property.
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "hvc" => Some(Self::Hvc),
            "smc" => Some(Self::Smc),
            _ => None,
        }
    }

    /// The DTB's spelling of the conduit.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
        }
    }
}

static CONDUIT: Once<Conduit> = Once::new();

/// Records the conduit; called once at boot from the DTB.
pub fn init(conduit: Conduit) {
    CONDUIT.call_once(|| conduit);
}

fn conduit() -> Option<Conduit> {
    CONDUIT.get().copied()
}

/// PSCI_VERSION as (major, minor).
pub fn version() -> Option<(u16, u16)> {
    let v = match conduit()? {
        Conduit::Hvc => psci::version::<Hvc>(),
        Conduit::Smc => psci::version::<Smc>(),
    }
    .ok()?;
    Some((v.major, v.minor))
}

/// CPU_ON: starts the CPU `mpidr` at physical `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), psci::Error> {
    match conduit() {
        Some(Conduit::Hvc) => psci::cpu_on::<Hvc>(mpidr, entry, context),
        Some(Conduit::Smc) => psci::cpu_on::<Smc>(mpidr, entry, context),
        None => Err(psci::Error::NotSupported),
    }
}

/// SYSTEM_OFF. QEMU exits with status 0; used only when semihosting is absent.
pub fn system_off() {
    let _ = match conduit() {
        Some(Conduit::Hvc) => psci::system_off::<Hvc>(),
        Some(Conduit::Smc) => psci::system_off::<Smc>(),
        None => Ok(()),
    };
}
