//! CPU errata that change how broadcast TLB invalidation completes, detected from MIDR_EL1.
//! Portable and host-tested; the kernel reads the register (`aarch64::cpu::midr`) and the TLB
//! module applies the workaround (`aarch64::tlb`, `mm::tlb`).
//!
//! - **repeat-tlbi** (Arm erratum 4118414, CVE-2025-10263): a broadcast `TLBI` completed by
//!   `DSB ISH` may report completion before writes made through the old translation are
//!   observed by other agents. The workaround, as Linux has it since 2026 (its
//!   `ARM64_WORKAROUND_REPEAT_TLBI` reworked to repeat once per completion): after the
//!   completing `DSB ISH`, one more `TLBI VALE1IS, XZR` and `DSB ISH`, however many TLBIs the
//!   first DSB completed. Affected here: the Arm cores listed in [`REPEAT_TLBI_PARTS`].
//! - **dvmsync-ipi** (Arm erratum 4193714, C1-Pro): a CPU may acknowledge the DVM sync of a
//!   broadcast TLBI before its own outstanding accesses through the old translation completed.
//!   The workaround: after the completing `DSB ISH`, interrupt the CPUs that run the address
//!   space and wait until each acknowledged (each one's own `DSB ISH` completes its accesses).
//!
//! MIDR_EL1 layout (Arm ARM D23.2 "MIDR_EL1"): Implementer `[31:24]`, Variant `[23:20]`,
//! Architecture `[19:16]`, PartNum `[15:4]`, Revision `[3:0]`.

/// MIDR_EL1.Implementer of Arm Limited.
pub const IMPLEMENTER_ARM: u8 = 0x41;

/// MIDR_EL1, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Midr(pub u64);

impl Midr {
    /// The implementer code (`[31:24]`: 0x41 Arm, 0x00 reserved for software, as QEMU's `max`).
    pub const fn implementer(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// The variant (`[23:20]`: the major revision, `rN`).
    pub const fn variant(self) -> u8 {
        ((self.0 >> 20) & 0xf) as u8
    }

    /// The primary part number (`[15:4]`).
    pub const fn part(self) -> u16 {
        ((self.0 >> 4) & 0xfff) as u16
    }

    /// The revision (`[3:0]`: the minor revision, `pN`).
    pub const fn revision(self) -> u8 {
        (self.0 & 0xf) as u8
    }

    /// The Arm core's name, when the implementer is Arm and the part is one this module knows.
    pub fn arm_core(self) -> Option<&'static str> {
        if self.implementer() != IMPLEMENTER_ARM {
            return None;
        }
        REPEAT_TLBI_PARTS
            .iter()
            .chain(DVMSYNC_PARTS)
            .chain(OTHER_PARTS)
            .find(|(part, _)| *part == self.part())
            .map(|(_, name)| *name)
    }
}

/// Arm cores affected by erratum 4118414 (repeat-tlbi), by MIDR part number (those Linux's
/// CVE-2025-10263 workaround names; every revision).
pub const REPEAT_TLBI_PARTS: &[(u16, &str)] = &[
    (0xd0b, "Cortex-A76"),
    (0xd0c, "Neoverse-N1"),
    (0xd0d, "Cortex-A77"),
    (0xd40, "Neoverse-V1"),
    (0xd41, "Cortex-A78"),
    (0xd44, "Cortex-X1"),
    (0xd47, "Cortex-A710"),
    (0xd48, "Cortex-X2"),
    (0xd49, "Neoverse-N2"),
    (0xd4e, "Cortex-X3"),
    (0xd4f, "Neoverse-V2"),
    (0xd82, "Cortex-X4"),
    (0xd84, "Neoverse-V3"),
    (0xd85, "Cortex-X925"),
];

/// Arm cores affected by erratum 4193714 (dvmsync-ipi). QEMU models none of them.
pub const DVMSYNC_PARTS: &[(u16, &str)] = &[(0xd8b, "C1-Pro")];

/// Arm cores QEMU models that neither erratum affects (named in the boot log only).
const OTHER_PARTS: &[(u16, &str)] = &[
    (0xd03, "Cortex-A53"),
    (0xd07, "Cortex-A57"),
    (0xd08, "Cortex-A72"),
    (0xd05, "Cortex-A55"),
];

/// The errata of [this module](self) in force: which workarounds every broadcast completion
/// runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Errata {
    /// Erratum 4118414: one `TLBI VALE1IS, XZR; DSB ISH` after each completing `DSB ISH`.
    pub repeat_tlbi: bool,
    /// Erratum 4193714: an IPI to the CPUs running the space after each completion, waited for.
    pub dvmsync_ipi: bool,
}

impl Errata {
    /// No erratum.
    pub const NONE: Errata = Errata {
        repeat_tlbi: false,
        dvmsync_ipi: false,
    };

    /// The errata of the CPU whose MIDR_EL1 is `midr`.
    pub fn from_midr(midr: u64) -> Errata {
        let midr = Midr(midr);
        let listed = |parts: &[(u16, &str)]| {
            midr.implementer() == IMPLEMENTER_ARM && parts.iter().any(|(p, _)| *p == midr.part())
        };
        Errata {
            repeat_tlbi: listed(REPEAT_TLBI_PARTS),
            dvmsync_ipi: listed(DVMSYNC_PARTS),
        }
    }

    /// Whether any erratum is in force.
    pub const fn any(self) -> bool {
        self.repeat_tlbi || self.dvmsync_ipi
    }

    /// The errata in force, by the names `errata=` spells them, in this order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (self.repeat_tlbi, Self::NAMES[0]),
            (self.dvmsync_ipi, Self::NAMES[1]),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }

    /// Every erratum's name, as `errata=` and the summary's `errata` spell it.
    pub const NAMES: [&'static str; 2] = ["repeat-tlbi", "dvmsync-ipi"];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MIDR_EL1 values QEMU 7.2 gives its models (target/arm/cpu64.c, cpu_tcg.c), and what
    /// the boot tests run on.
    const QEMU_MAX: u64 = 0x000f_0510;
    const QEMU_CORTEX_A72: u64 = 0x410f_d083;
    const QEMU_CORTEX_A76: u64 = 0x414f_d0b1;
    const QEMU_NEOVERSE_N1: u64 = 0x414f_d0c1;
    const QEMU_CORTEX_A57: u64 = 0x411f_d070;
    const QEMU_CORTEX_A53: u64 = 0x410f_d034;

    #[test]
    fn midr_fields() {
        let m = Midr(QEMU_NEOVERSE_N1);
        assert_eq!(
            (m.implementer(), m.variant(), m.part(), m.revision()),
            (0x41, 4, 0xd0c, 1)
        );
        assert_eq!(m.arm_core(), Some("Neoverse-N1"));
        assert_eq!(Midr(QEMU_CORTEX_A72).arm_core(), Some("Cortex-A72"));
        assert_eq!(Midr(QEMU_MAX).implementer(), 0);
        assert_eq!(Midr(QEMU_MAX).arm_core(), None);
    }

    #[test]
    fn qemu_models_affected_and_not() {
        let repeat = Errata {
            repeat_tlbi: true,
            dvmsync_ipi: false,
        };
        assert_eq!(Errata::from_midr(QEMU_NEOVERSE_N1), repeat);
        assert_eq!(Errata::from_midr(QEMU_CORTEX_A76), repeat);
        for clean in [QEMU_MAX, QEMU_CORTEX_A72, QEMU_CORTEX_A57, QEMU_CORTEX_A53] {
            assert_eq!(Errata::from_midr(clean), Errata::NONE, "{clean:#x}");
        }
    }

    /// Every listed part, in every variant and revision, and only from Arm: the same part number
    /// under another implementer is another company's core.
    #[test]
    fn every_listed_part_any_revision_arm_only() {
        let midr = |imp: u64, var: u64, part: u64, rev: u64| {
            imp << 24 | var << 20 | 0xf << 16 | part << 4 | rev
        };
        for &(part, name) in REPEAT_TLBI_PARTS {
            for (var, rev) in [(0, 0), (1, 2), (0xf, 0xf)] {
                let e = Errata::from_midr(midr(0x41, var, part as u64, rev));
                assert!(e.repeat_tlbi && !e.dvmsync_ipi, "{name} r{var}p{rev}");
            }
            // Qualcomm (0x51) and software (0x00) implementers with the same part number.
            for imp in [0x00, 0x51, 0x48] {
                assert_eq!(
                    Errata::from_midr(midr(imp, 0, part as u64, 0)),
                    Errata::NONE,
                    "{name} from implementer {imp:#x}"
                );
            }
            assert_eq!(Midr(midr(0x41, 0, part as u64, 0)).arm_core(), Some(name));
        }
        let c1_pro = Errata::from_midr(midr(0x41, 0, 0xd8b, 0));
        assert!(c1_pro.dvmsync_ipi && !c1_pro.repeat_tlbi);
        // Neighbours of listed parts that are not listed: A75 (d0a), A78AE (d42), A715 (d4d).
        for part in [0xd0a, 0xd42, 0xd4d, 0xd83, 0xd86] {
            assert_eq!(Errata::from_midr(midr(0x41, 0, part, 0)), Errata::NONE);
        }
        // Fields around PartNum must not leak in: Architecture and the bits above 31.
        assert_eq!(
            Errata::from_midr(0xffff_ffff_0000_0000 | midr(0x41, 0, 0xd08, 0)),
            Errata::NONE
        );
        assert!(Errata::from_midr(0xffff_ffff_0000_0000 | QEMU_NEOVERSE_N1).repeat_tlbi);
    }

    #[test]
    fn names_in_order() {
        let all = Errata {
            repeat_tlbi: true,
            dvmsync_ipi: true,
        };
        assert_eq!(
            all.names().collect::<Vec<_>>(),
            ["repeat-tlbi", "dvmsync-ipi"]
        );
        assert_eq!(Errata::NONE.names().count(), 0);
        assert!(!Errata::NONE.any() && all.any());
        let dvm = Errata {
            dvmsync_ipi: true,
            ..Errata::NONE
        };
        assert_eq!(dvm.names().collect::<Vec<_>>(), ["dvmsync-ipi"]);
    }
}
