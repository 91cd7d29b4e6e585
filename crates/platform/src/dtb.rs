//! Platform discovery from the flattened device tree (dtoolkit): memory, CPUs, PSCI conduit,
//! GICv3, PL011, timer interrupt, boot arguments. Nothing here is hard-coded; a DTB that lacks
//! something broadside needs is a configuration error (exit code 2) with a message naming it.

use broadside_base::config::MAX_CPUS;
use dtoolkit::fdt::Fdt;
use dtoolkit::standard::NodeStandard;
use dtoolkit::{Node, Property};

/// The most `/memory` ranges recorded.
pub const MAX_MEMORY_RANGES: usize = 8;

/// The most GICv3 redistributor regions recorded. QEMU `virt` uses two (123 redistributors in
/// the first, the rest of its 512 in the second); a GIC node may name more.
pub const MAX_GICR_REGIONS: usize = 8;

/// A physical address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PhysRange {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// What broadside learns from the DTB.
#[derive(Debug)]
pub struct PlatformInfo {
    /// RAM, from `/memory` (the first `memory_ranges` entries).
    pub memory: [PhysRange; MAX_MEMORY_RANGES],
    /// How many entries of `memory` are used.
    pub memory_ranges: usize,
    /// MPIDR affinity of each CPU, in DTB order; index = logical CPU number.
    pub cpu_mpidrs: [u64; MAX_CPUS],
    /// CPUs in the DTB.
    pub cpus: usize,
    /// `/psci` `method`: "hvc" or "smc".
    pub psci_method: &'static str,
    /// The GICv3 distributor.
    pub gicd: PhysRange,
    /// The redistributor regions, in `reg` order (the first `gicr_regions` entries).
    pub gicr: [PhysRange; MAX_GICR_REGIONS],
    /// Redistributor regions in the DTB (`#redistributor-regions`, 1 when absent).
    pub gicr_regions: usize,
    /// The PL011 UART.
    pub uart: PhysRange,
    /// The EL1 virtual timer's PPI number (INTID = 16 + PPI).
    pub timer_virtual_ppi: u32,
    /// `/chosen/bootargs` (QEMU's `-append`).
    pub bootargs: &'static str,
    /// Where the DTB itself lies (kept away from the frame allocator).
    pub dtb: PhysRange,
}

/// Why the DTB could not be used.
#[derive(Debug)]
pub struct DtbError(
    /// What was missing or malformed.
    pub &'static str,
);

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "dtb: {}", self.0)
    }
}

/// Parses the DTB at virtual address `va` (physical `pa`).
///
/// # Safety
///
/// `va` must point to a readable DTB that stays mapped and unmodified for the kernel's lifetime
/// (the frame allocator never hands out its pages).
pub unsafe fn parse(va: u64, pa: u64) -> Result<PlatformInfo, DtbError> {
    // SAFETY: forwarded from the caller; `from_raw` validates the header and size.
    let fdt: Fdt<'static> =
        unsafe { Fdt::from_raw(va as *const u8) }.map_err(|_| DtbError("no valid DTB found"))?;
    parse_fdt(fdt, pa)
}

/// Parses the DTB QEMU left at physical address `pa`, read through the early tables' linear map
/// (the boot CPU, before the kernel tables are built). A DTB not wholly inside the early
/// window ([`ImageLayout::early_window`](broadside_arch::aarch64::layout::ImageLayout::early_window))
/// is an error, not a read of unmapped memory.
#[cfg(target_arch = "aarch64")]
pub fn parse_early(pa: u64) -> Result<PlatformInfo, DtbError> {
    use broadside_arch::aarch64::layout::{ImageLayout, phys_to_virt};
    /// The FDT header's size; `totalsize` is its second big-endian word.
    const HEADER_LEN: u64 = 40;
    let (lo, hi) = ImageLayout::get().early_window();
    let inside = |len: u64| pa >= lo && pa.checked_add(len).is_some_and(|end| end <= hi);
    let outside = DtbError("not inside the 1 GiB that holds the image (the early map)");
    if !inside(HEADER_LEN) {
        return Err(outside);
    }
    let va = phys_to_virt(broadside_arch::PhysAddr::new(pa)).as_u64();
    // SAFETY: the header lies inside the early window, which the early tables map as normal
    // memory at `phys_to_virt`, and nothing writes it.
    let header = unsafe { (va as *const [u8; 8]).read_volatile() };
    let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as u64;
    if !inside(total.max(HEADER_LEN)) {
        return Err(outside);
    }
    // SAFETY: the whole DTB lies in the early window (checked above). It stays mapped: the
    // kernel tables map all RAM in the linear map, and `memory::kmap` refuses to switch to them
    // if the DTB is not in RAM. It stays unmodified: nothing writes it, and the boot sequence
    // gives the frame allocator RAM minus `PlatformInfo::dtb`.
    unsafe { parse(va, pa) }
}

/// Parses a validated DTB that lies at physical address `pa`. Portable: the host tests feed it
/// DTBs that QEMU wrote (`-machine dumpdtb=`).
pub fn parse_fdt(fdt: Fdt<'static>, pa: u64) -> Result<PlatformInfo, DtbError> {
    let dtb = PhysRange {
        base: pa,
        size: fdt.data().len() as u64,
    };

    let mut info = PlatformInfo {
        memory: [PhysRange::default(); MAX_MEMORY_RANGES],
        memory_ranges: 0,
        cpu_mpidrs: [0; MAX_CPUS],
        cpus: 0,
        psci_method: "",
        gicd: PhysRange::default(),
        gicr: [PhysRange::default(); MAX_GICR_REGIONS],
        gicr_regions: 1,
        uart: PhysRange::default(),
        timer_virtual_ppi: 0,
        bootargs: "",
        dtb,
    };

    // Memory: every /memory* node's reg entries.
    for node in fdt.root().children() {
        let name: &str = node.name_without_address();
        if name != "memory" {
            continue;
        }
        let regs = node.reg().map_err(|_| DtbError("bad /memory reg"))?;
        for reg in regs.into_iter().flatten() {
            let base = reg
                .address::<u64>()
                .map_err(|_| DtbError("bad /memory reg"))?;
            let size = reg.size::<u64>().map_err(|_| DtbError("bad /memory reg"))?;
            if info.memory_ranges == MAX_MEMORY_RANGES {
                return Err(DtbError("more /memory ranges than supported"));
            }
            info.memory[info.memory_ranges] = PhysRange { base, size };
            info.memory_ranges += 1;
        }
    }
    if info.memory_ranges == 0 {
        return Err(DtbError("no /memory node"));
    }

    // CPUs, in DTB order.
    let cpus = fdt.cpus().map_err(|_| DtbError("no /cpus node"))?;
    for cpu in cpus.cpus() {
        let ids = cpu.ids().map_err(|_| DtbError("bad /cpus/cpu reg"))?;
        for id in ids {
            let mpidr = dtoolkit::ToCellInt::to_int::<u64>(id)
                .map_err(|_| DtbError("bad /cpus/cpu reg"))?;
            if info.cpus == MAX_CPUS {
                return Err(DtbError("more CPUs than MAX_CPUS"));
            }
            info.cpu_mpidrs[info.cpus] = mpidr;
            info.cpus += 1;
        }
    }
    if info.cpus == 0 {
        return Err(DtbError("no CPUs in /cpus"));
    }

    // PSCI conduit.
    let psci = fdt.find_node("/psci").ok_or(DtbError("no /psci node"))?;
    info.psci_method = psci
        .property("method")
        .and_then(|p| p.value_as::<&str>().ok())
        .ok_or(DtbError("/psci has no method"))?;

    // GICv3: reg = <GICD> <GICR region 0> ... <GICR region N-1> [<GICC> <GICH> <GICV>], with
    // N = `#redistributor-regions` (1 when absent): the binding
    // Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml. QEMU virt with more
    // than 123 CPUs names two.
    let gic = fdt
        .root()
        .children()
        .find(|n| n.is_compatible("arm,gic-v3"))
        .ok_or(DtbError(
            "no arm,gic-v3 interrupt controller (boot QEMU with gic-version=3)",
        ))?;
    let mut regs = gic
        .reg()
        .map_err(|_| DtbError("bad GIC reg"))?
        .ok_or(DtbError("GIC has no reg"))?;
    info.gicd = reg_range(regs.next(), "GIC distributor")?;
    if let Some(p) = gic.property("#redistributor-regions") {
        let n = p
            .value_as::<u32>()
            .map_err(|_| DtbError("bad #redistributor-regions"))?;
        if n == 0 {
            return Err(DtbError("#redistributor-regions is 0"));
        }
        if n as usize > MAX_GICR_REGIONS {
            return Err(DtbError(
                "more GIC redistributor regions than supported (8)",
            ));
        }
        info.gicr_regions = n as usize;
    }
    for region in &mut info.gicr[..info.gicr_regions] {
        *region = reg_range(
            regs.next(),
            "GIC redistributor region (fewer reg entries than #redistributor-regions)",
        )?;
    }

    // PL011: prefer /chosen stdout-path, else the first arm,pl011.
    let uart = fdt
        .root()
        .children()
        .find(|n| n.is_compatible("arm,pl011"))
        .ok_or(DtbError("no arm,pl011 UART"))?;
    let mut uregs = uart
        .reg()
        .map_err(|_| DtbError("bad UART reg"))?
        .ok_or(DtbError("UART has no reg"))?;
    info.uart = reg_range(uregs.next(), "UART")?;

    // Timer: interrupts = <type num flags> x4: secure phys, non-secure phys, virtual, hyp.
    let timer = fdt
        .root()
        .children()
        .find(|n| n.is_compatible("arm,armv8-timer"))
        .ok_or(DtbError("no arm,armv8-timer node"))?;
    let ints = timer
        .property("interrupts")
        .ok_or(DtbError("timer has no interrupts"))?;
    let cells = ints.value();
    if cells.len() < 36 {
        return Err(DtbError("timer interrupts too short"));
    }
    let cell = |i: usize| {
        u32::from_be_bytes([
            cells[4 * i],
            cells[4 * i + 1],
            cells[4 * i + 2],
            cells[4 * i + 3],
        ])
    };
    if cell(6) != 1 {
        return Err(DtbError("virtual timer interrupt is not a PPI"));
    }
    info.timer_virtual_ppi = cell(7);

    // Boot arguments (absent = empty).
    if let Some(p) = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("bootargs"))
    {
        info.bootargs = p
            .value_as::<&str>()
            .map_err(|_| DtbError("bad /chosen/bootargs"))?;
    }
    Ok(info)
}

fn reg_range(
    reg: Option<dtoolkit::standard::Reg<'_>>,
    what: &'static str,
) -> Result<PhysRange, DtbError> {
    let reg = reg.ok_or(DtbError(what))?;
    let base = reg.address::<u64>().map_err(|_| DtbError(what))?;
    let size = reg.size::<u64>().map_err(|_| DtbError(what))?;
    Ok(PhysRange { base, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2 `-M virt,gic-version=3 -smp 4`, written by `-machine dumpdtb=` (trimmed to the
    /// header's blocks; QEMU pads the blob to 1 MiB).
    static SMP4: &[u8] = include_bytes!("../testdata/virt-gicv3-smp4.dtb");
    /// The same with `-smp 512`: CPUs 123 and up have their redistributors in a second region.
    static SMP512: &[u8] = include_bytes!("../testdata/virt-gicv3-smp512.dtb");

    fn parse_blob(blob: &'static [u8]) -> Result<PlatformInfo, DtbError> {
        parse_fdt(Fdt::new(blob).expect("valid DTB"), 0x4000_0000)
    }

    #[test]
    fn one_redistributor_region() {
        let info = parse_blob(SMP4).unwrap();
        assert_eq!(info.cpus, 4);
        assert_eq!(info.gicr_regions, 1);
        assert_eq!(
            info.gicd,
            PhysRange {
                base: 0x0800_0000,
                size: 0x1_0000
            }
        );
        // QEMU sizes the first region for 123 redistributors of 128 KiB whatever -smp is.
        assert_eq!(
            info.gicr[0],
            PhysRange {
                base: 0x080a_0000,
                size: 123 * 0x2_0000
            }
        );
        assert_eq!(info.gicr[1], PhysRange::default());
    }

    #[test]
    fn two_redistributor_regions_and_512_cpus() {
        let info = parse_blob(SMP512).unwrap();
        assert_eq!(info.cpus, 512);
        assert_eq!(info.gicr_regions, 2);
        assert_eq!(
            info.gicr[0],
            PhysRange {
                base: 0x080a_0000,
                size: 123 * 0x2_0000
            }
        );
        // The second region (QEMU's VIRT_HIGH_GIC_REDIST2) holds the other 389 redistributors.
        assert_eq!(info.gicr[1].base, 0x40_0000_0000);
        assert!(info.gicr[1].size >= 389 * 0x2_0000, "{:?}", info.gicr[1]);
        let total: u64 = info.gicr[..2].iter().map(|r| r.size / 0x2_0000).sum();
        assert!(total >= 512);
        // QEMU virt's GICv3 clusters hold 16 CPUs: Aff0 = n % 16, Aff1 = n / 16.
        for (n, &mpidr) in info.cpu_mpidrs[..512].iter().enumerate() {
            assert_eq!(mpidr, ((n as u64 / 16) << 8) | (n as u64 % 16), "cpu {n}");
        }
        // The device nodes after the GIC are still found.
        assert_eq!(info.uart.base, 0x0900_0000);
        assert_eq!(info.psci_method, "hvc");
    }
}
