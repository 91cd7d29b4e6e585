//! VMSAv8-64 stage-1 translation table descriptors: 4 KiB granule, 48-bit VA, levels 0 to 3.
//!
//! This module is pure bit layout: it builds and decodes descriptors and walks tables through a
//! [`TableMemory`] accessor, so the same code runs in the kernel, in the lockless walker's
//! reference logic, in the GDB helper's model and in host tests. Nothing here touches hardware.
//!
//! Layout (Arm ARM D8.3 "Translation table descriptor formats"; Linux
//! `arch/arm64/include/asm/pgtable-hwdef.h` names the same bits `PTE_*`/`PMD_*`):
//!
//! - bit 0 valid; bit 1 selects Table at levels 0..=2 but Page at level 3. At level 3, bit 1
//!   clear is reserved and faults; a Block at level 0 is not permitted for the 4 KiB granule
//!   with 48-bit output addresses (it would need FEAT_LPA2), so it faults too.
//! - output address in bits [47:12] (tables and pages), [47:21] (level-2 blocks) or [47:30]
//!   (level-1 blocks).
//! - lower attributes: AttrIndx [4:2] (an index into MAIR_EL1), AP [7:6], SH [9:8], AF [10],
//!   nG [11]; upper attributes: PXN [53], UXN [54], software use [58:55].
//! - table descriptors carry no hierarchical attributes here: APTable/XNTable/PXNTable stay 0,
//!   so each leaf alone decides the permissions (simpler to reason about when tables are shared).
//!
//! Bits broadside never sets (NS, DBM, Contiguous, PBHA) are not modelled by [`Attributes`]:
//! decoding drops them.

use crate::addr::PhysAddr;
/// The granule, defined with the address types (a page offset is an address property).
pub use crate::addr::{PAGE_SHIFT, PAGE_SIZE};
/// Descriptors in one table page (4 KiB / 8 bytes).
pub const ENTRIES_PER_TABLE: usize = 512;
/// Bits of VA translated by one table level.
pub const BITS_PER_LEVEL: u32 = 9;
/// Width of the virtual address space of one TTBR (TCR_EL1.TxSZ = 16).
pub const VA_BITS: u32 = 48;
/// The level of the root table (TTBRn_EL1 points at it).
pub const ROOT_LEVEL: u8 = 0;
/// The last level: its valid entries are always pages.
pub const LEAF_LEVEL: u8 = 3;
/// Size mapped by a level-1 block descriptor.
pub const L1_BLOCK_SIZE: u64 = 1 << 30;
/// Size mapped by a level-2 block descriptor.
pub const L2_BLOCK_SIZE: u64 = 1 << 21;
/// Size mapped by a level-3 page descriptor.
pub const L3_PAGE_SIZE: u64 = PAGE_SIZE;

/// Bits [47:12]: the output address of a table or page descriptor.
pub const OUTPUT_ADDRESS_MASK: u64 = ((1 << 48) - 1) & !(PAGE_SIZE - 1);

/// MAIR_EL1 attribute index for Normal memory, write-back cacheable.
pub const MAIR_IDX_NORMAL: u8 = 0;
/// MAIR_EL1 attribute index for Device-nGnRE memory (MMIO).
// Keeps the Arm ARM's spelling of the memory type: "NGNRE" would hide which letters are "not".
#[allow(non_upper_case_globals)]
pub const MAIR_IDX_DEVICE_nGnRE: u8 = 1;
/// MAIR_EL1 attribute index for Normal memory, non-cacheable.
pub const MAIR_IDX_NORMAL_NC: u8 = 2;

/// MAIR attribute byte: Normal, inner and outer write-back non-transient, read- and
/// write-allocate.
const MAIR_ATTR_NORMAL_WB: u64 = 0xff;
/// MAIR attribute byte: Device-nGnRE.
const MAIR_ATTR_DEVICE_NGNRE: u64 = 0x04;
/// MAIR attribute byte: Normal, inner and outer non-cacheable.
const MAIR_ATTR_NORMAL_NC: u64 = 0x44;

/// The value to program into MAIR_EL1 so the `MAIR_IDX_*` indexes mean what their names say.
pub const MAIR_VALUE: u64 = (MAIR_ATTR_NORMAL_WB << (8 * MAIR_IDX_NORMAL as u64))
    | (MAIR_ATTR_DEVICE_NGNRE << (8 * MAIR_IDX_DEVICE_nGnRE as u64))
    | (MAIR_ATTR_NORMAL_NC << (8 * MAIR_IDX_NORMAL_NC as u64));

const DESC_VALID: u64 = 1 << 0;
/// Table at levels 0..=2, Page at level 3.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u32 = 2;
const ATTR_INDEX_MASK: u64 = 0b111 << ATTR_INDEX_SHIFT;
const AP_SHIFT: u32 = 6;
const AP_MASK: u64 = 0b11 << AP_SHIFT;
const SH_SHIFT: u32 = 8;
const SH_MASK: u64 = 0b11 << SH_SHIFT;
const ATTR_AF: u64 = 1 << 10;
const ATTR_NG: u64 = 1 << 11;
const ATTR_PXN: u64 = 1 << 53;
const ATTR_UXN: u64 = 1 << 54;
const SW_SHIFT: u32 = 55;
const SW_MASK: u64 = 0b1111 << SW_SHIFT;

/// Every bit [`Attributes`] owns; the rest of a leaf descriptor is type, address, or unmodelled.
pub const ATTRIBUTE_MASK: u64 =
    ATTR_INDEX_MASK | AP_MASK | SH_MASK | ATTR_AF | ATTR_NG | ATTR_PXN | ATTR_UXN | SW_MASK;

/// Index of the entry translating `va` in its table at `level` (0..=3).
///
/// # Panics
/// If `level > 3`.
pub const fn table_index(va: u64, level: u8) -> usize {
    ((va >> level_shift(level)) as usize) & (ENTRIES_PER_TABLE - 1)
}

/// Bytes of VA covered by one entry of a table at `level`: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
/// For levels 1 and 2 this is also the size of a block mapped there.
///
/// # Panics
/// If `level > 3`.
pub const fn level_block_size(level: u8) -> u64 {
    1 << level_shift(level)
}

const fn level_shift(level: u8) -> u32 {
    assert!(level <= LEAF_LEVEL, "VMSAv8-64 4K/48-bit levels are 0..=3");
    PAGE_SHIFT + BITS_PER_LEVEL * (LEAF_LEVEL - level) as u32
}

/// Whether bits [63:48] of `va` are all zeros (TTBR0 half) or all ones (TTBR1 half). Any
/// other VA takes a level-0 translation fault whichever root is used.
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> VA_BITS;
    top == 0 || top == (1 << (64 - VA_BITS)) - 1
}

/// Data access permissions, the AP[2:1] field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccessPermission {
    /// EL1 read/write, no EL0 access.
    El1ReadWrite = 0b00,
    /// EL1 and EL0 read/write.
    El1El0ReadWrite = 0b01,
    /// EL1 read-only, no EL0 access.
    El1ReadOnly = 0b10,
    /// EL1 and EL0 read-only.
    El1El0ReadOnly = 0b11,
}

impl AccessPermission {
    const fn from_field(field: u64) -> Self {
        match field & 0b11 {
            0b00 => Self::El1ReadWrite,
            0b01 => Self::El1El0ReadWrite,
            0b10 => Self::El1ReadOnly,
            _ => Self::El1El0ReadOnly,
        }
    }

    /// Whether EL1 may write through this mapping.
    pub const fn el1_writable(self) -> bool {
        matches!(self, Self::El1ReadWrite | Self::El1El0ReadWrite)
    }
}

/// The SH[1:0] field. For Device memory the field is ignored (the Arm ARM treats Device
/// regions as Outer Shareable), so broadside writes NonShareable there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shareability {
    /// 0b00.
    NonShareable = 0b00,
    /// 0b10.
    OuterShareable = 0b10,
    /// 0b11: the domain `TLBI ...IS` and `DSB ISH` cover; all CPUs of QEMU virt are in it.
    InnerShareable = 0b11,
}

impl Shareability {
    /// 0b01 is reserved (CONSTRAINED UNPREDICTABLE); broadside never writes it and decodes it
    /// as NonShareable.
    const fn from_field(field: u64) -> Self {
        match field & 0b11 {
            0b10 => Self::OuterShareable,
            0b11 => Self::InnerShareable,
            _ => Self::NonShareable,
        }
    }
}

/// The attributes of a block or page descriptor that broadside uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// AttrIndx: which MAIR_EL1 byte gives the memory type (`MAIR_IDX_*`); 0..=7.
    pub mair_index: u8,
    /// AP[2:1].
    pub access: AccessPermission,
    /// SH[1:0].
    pub shareability: Shareability,
    /// AF. broadside handles no Access flag faults, so every mapping it makes has it set.
    pub accessed: bool,
    /// nG: the TLB entry is tagged with the current ASID (user mappings) rather than global.
    pub not_global: bool,
    /// PXN: no execution at EL1.
    pub privileged_execute_never: bool,
    /// UXN: no execution at EL0.
    pub user_execute_never: bool,
    /// Bits [58:55], ignored by hardware and free for software; 0..=15.
    pub sw_bits: u8,
}

impl Attributes {
    const fn kernel(access: AccessPermission, pxn: bool) -> Self {
        Self {
            mair_index: MAIR_IDX_NORMAL,
            access,
            shareability: Shareability::InnerShareable,
            accessed: true,
            not_global: false,
            privileged_execute_never: pxn,
            user_execute_never: true,
            sw_bits: 0,
        }
    }

    /// Kernel code: read-only, executable at EL1 only.
    pub const fn kernel_text() -> Self {
        Self::kernel(AccessPermission::El1ReadOnly, false)
    }

    /// Kernel constants: read-only, never executable.
    pub const fn kernel_rodata() -> Self {
        Self::kernel(AccessPermission::El1ReadOnly, true)
    }

    /// Kernel data, heap, stacks: read/write, never executable.
    pub const fn kernel_data() -> Self {
        Self::kernel(AccessPermission::El1ReadWrite, true)
    }

    /// MMIO: Device-nGnRE, read/write, never executable, global.
    pub const fn device() -> Self {
        Self {
            mair_index: MAIR_IDX_DEVICE_nGnRE,
            shareability: Shareability::NonShareable,
            ..Self::kernel_data()
        }
    }

    /// TTBR0 (address-space) data the kernel reads and writes: EL1 read/write (the kernel is
    /// the only thing that touches these mappings), ASID-tagged, never executable.
    pub const fn user_data_rw() -> Self {
        Self {
            not_global: true,
            ..Self::kernel_data()
        }
    }

    /// TTBR0 (address-space) data mapped read-only; otherwise as [`Self::user_data_rw`].
    pub const fn user_data_ro() -> Self {
        Self {
            access: AccessPermission::El1ReadOnly,
            ..Self::user_data_rw()
        }
    }

    /// These attributes with the software bits [58:55] replaced by `sw_bits` (0..=15).
    ///
    /// # Panics
    /// If `sw_bits > 15`.
    pub const fn with_sw_bits(self, sw_bits: u8) -> Self {
        assert!(sw_bits <= 0b1111, "descriptor software bits are [58:55]");
        Self { sw_bits, ..self }
    }

    /// The descriptor bits for these attributes (only bits in [`ATTRIBUTE_MASK`]).
    ///
    /// `mair_index` and `sw_bits` are masked to their field widths so that a bad value can never
    /// corrupt a neighbouring field; debug builds assert they were in range.
    pub const fn to_bits(self) -> u64 {
        debug_assert!(self.mair_index <= 0b111);
        debug_assert!(self.sw_bits <= 0b1111);
        let mut bits = ((self.mair_index as u64) << ATTR_INDEX_SHIFT) & ATTR_INDEX_MASK;
        bits |= (self.access as u64) << AP_SHIFT;
        bits |= (self.shareability as u64) << SH_SHIFT;
        bits |= ((self.sw_bits as u64) << SW_SHIFT) & SW_MASK;
        if self.accessed {
            bits |= ATTR_AF;
        }
        if self.not_global {
            bits |= ATTR_NG;
        }
        if self.privileged_execute_never {
            bits |= ATTR_PXN;
        }
        if self.user_execute_never {
            bits |= ATTR_UXN;
        }
        bits
    }

    /// The attributes held in a block or page descriptor; other bits are ignored.
    pub const fn from_bits(bits: u64) -> Self {
        Self {
            mair_index: ((bits & ATTR_INDEX_MASK) >> ATTR_INDEX_SHIFT) as u8,
            access: AccessPermission::from_field(bits >> AP_SHIFT),
            shareability: Shareability::from_field(bits >> SH_SHIFT),
            accessed: bits & ATTR_AF != 0,
            not_global: bits & ATTR_NG != 0,
            privileged_execute_never: bits & ATTR_PXN != 0,
            user_execute_never: bits & ATTR_UXN != 0,
            sw_bits: ((bits & SW_MASK) >> SW_SHIFT) as u8,
        }
    }
}

/// What a descriptor means at the level it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Translation fault: bit 0 clear, or an encoding reserved at this level.
    Invalid,
    /// Points at the next-level table (levels 0..=2).
    Table {
        /// Physical address of the next-level table.
        next: PhysAddr,
    },
    /// Maps a 1 GiB (level 1) or 2 MiB (level 2) block.
    Block {
        /// Physical address of the block.
        pa: PhysAddr,
        /// Its attributes.
        attrs: Attributes,
    },
    /// Maps a 4 KiB page (level 3).
    Page {
        /// Physical address of the page.
        pa: PhysAddr,
        /// Its attributes.
        attrs: Attributes,
    },
}

/// One 64-bit translation table entry, exactly as the MMU reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Descriptor(u64);

impl Descriptor {
    /// The all-zeros entry: translation fault at any level.
    pub const fn invalid() -> Self {
        Self(0)
    }

    /// Wraps an entry read from a table.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// A table descriptor (levels 0..=2) pointing at the table page at `next_table_pa`.
    ///
    /// # Panics
    /// If `next_table_pa` is not a 4 KiB-aligned address below 2^48.
    pub const fn table(next_table_pa: PhysAddr) -> Self {
        let next_table_pa = next_table_pa.as_u64();
        assert!(
            next_table_pa & !OUTPUT_ADDRESS_MASK == 0,
            "table address must be 4K-aligned and below 2^48"
        );
        Self(next_table_pa | DESC_TABLE_OR_PAGE | DESC_VALID)
    }

    /// A block descriptor at `level` 1 (1 GiB) or 2 (2 MiB) mapping `pa`.
    ///
    /// # Panics
    /// If `level` is not 1 or 2, or `pa` is not aligned to the block size or not below 2^48.
    pub const fn block(pa: PhysAddr, level: u8, attrs: Attributes) -> Self {
        let pa = pa.as_u64();
        assert!(
            level == 1 || level == 2,
            "4K-granule blocks exist at levels 1 and 2 only"
        );
        assert!(
            pa & !(OUTPUT_ADDRESS_MASK & !(level_block_size(level) - 1)) == 0,
            "block address must be aligned to the block size and below 2^48"
        );
        Self(pa | attrs.to_bits() | DESC_VALID)
    }

    /// A level-3 page descriptor mapping the 4 KiB page at `pa`.
    ///
    /// # Panics
    /// If `pa` is not a 4 KiB-aligned address below 2^48.
    pub const fn page(pa: PhysAddr, attrs: Attributes) -> Self {
        let pa = pa.as_u64();
        assert!(
            pa & !OUTPUT_ADDRESS_MASK == 0,
            "page address must be 4K-aligned and below 2^48"
        );
        Self(pa | attrs.to_bits() | DESC_TABLE_OR_PAGE | DESC_VALID)
    }

    /// The 64 bits as stored in the table.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bit 0. A valid entry may still fault if its encoding is reserved at its level; use
    /// [`Self::kind`] to know what it does.
    pub const fn is_valid(self) -> bool {
        self.0 & DESC_VALID != 0
    }

    /// What the entry is at `level`, without decoding a leaf's attributes (for hot paths that
    /// need only the kind): `Some(true)` a table, `Some(false)` a page or block, `None` invalid
    /// or reserved. Agrees with [`Self::kind`].
    pub const fn is_table_at(self, level: u8) -> Option<bool> {
        match self.kind_without_attrs(level) {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        }
    }

    /// The output address of a page or block at `level`, without decoding its attributes.
    pub const fn leaf_address(self, level: u8) -> Option<PhysAddr> {
        match self.kind_without_attrs(level) {
            2 => Some(self.output_address()),
            3 => Some(self.output_address().align_down(level_block_size(level))),
            _ => None,
        }
    }

    /// 0 invalid or reserved, 1 table, 2 page, 3 block: [`Self::kind`]'s decision alone.
    const fn kind_without_attrs(self, level: u8) -> u8 {
        assert!(level <= LEAF_LEVEL, "VMSAv8-64 4K/48-bit levels are 0..=3");
        if !self.is_valid() {
            return 0;
        }
        match (level, self.0 & DESC_TABLE_OR_PAGE != 0) {
            (LEAF_LEVEL, true) => 2,
            (LEAF_LEVEL, false) | (ROOT_LEVEL, false) => 0,
            (_, true) => 1,
            (_, false) => 3,
        }
    }

    /// Whether a leaf carries nG (its TLB entries are tagged with an ASID); read straight from
    /// the bit, for hot paths that need nothing else of the attributes.
    pub const fn not_global(self) -> bool {
        self.0 & ATTR_NG != 0
    }

    /// Bits [47:12]: the next table, page or block address (block addresses have their low
    /// bits zero because the constructors require alignment).
    pub const fn output_address(self) -> PhysAddr {
        PhysAddr::new(self.0 & OUTPUT_ADDRESS_MASK)
    }

    /// Decodes this entry as read from a table at `level` (0..=3).
    ///
    /// # Panics
    /// If `level > 3`.
    pub const fn kind(self, level: u8) -> DescriptorKind {
        assert!(level <= LEAF_LEVEL, "VMSAv8-64 4K/48-bit levels are 0..=3");
        if !self.is_valid() {
            return DescriptorKind::Invalid;
        }
        let table_or_page = self.0 & DESC_TABLE_OR_PAGE != 0;
        match (level, table_or_page) {
            (LEAF_LEVEL, true) => DescriptorKind::Page {
                pa: self.output_address(),
                attrs: Attributes::from_bits(self.0),
            },
            // Reserved at level 3 (Arm ARM: "behaves as invalid").
            (LEAF_LEVEL, false) => DescriptorKind::Invalid,
            (_, true) => DescriptorKind::Table {
                next: self.output_address(),
            },
            // A level-0 block needs FEAT_LPA2 with the 4K granule; without it, a fault.
            (ROOT_LEVEL, false) => DescriptorKind::Invalid,
            (_, false) => DescriptorKind::Block {
                pa: self.output_address().align_down(level_block_size(level)),
                attrs: Attributes::from_bits(self.0),
            },
        }
    }
}

/// Read access to translation tables by physical address: the kernel's implementation reads
/// through its linear map with a single-copy-atomic load (READ_ONCE), a test uses a map.
pub trait TableMemory {
    /// The raw entry `index` (0..512) of the table page at `table_pa`.
    fn read_entry(&self, table_pa: u64, index: usize) -> u64;
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address `va` translates to (including the offset inside the block/page).
    pub pa: u64,
    /// The level of the leaf: 1 or 2 for blocks, 3 for pages.
    pub level: u8,
    /// The leaf's attributes.
    pub attrs: Attributes,
}

/// Why a walk stopped without a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkFault {
    /// The level whose entry (or, for a non-canonical VA, whose lookup) faulted, as the Arm ARM
    /// reports it in ESR_ELx.DFSC "translation fault, level N".
    pub level: u8,
}

/// Everything a walk saw, for debugging (GDB helper) and for re-checks (lockless walker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkResult {
    /// The entry read at each level, `None` for levels the walk did not reach.
    pub descriptors: [Option<Descriptor>; 4],
    /// The translation, or where the walk faulted.
    pub outcome: Result<Translation, WalkFault>,
}

impl WalkResult {
    /// The translation, if the walk found one.
    pub fn translation(&self) -> Option<Translation> {
        self.outcome.ok()
    }
}

/// Translates `va` through the tables rooted at the level-0 table `root_pa`, as the MMU's
/// stage-1 walk does (Arm ARM D8.2 "Translation process"), reading each entry exactly once.
///
/// A non-canonical VA faults at level 0 without reading memory. Choosing the root (TTBR0 for
/// the low half, TTBR1 for the high half) is the caller's job; only VA bits [47:0] index.
pub fn walk(mem: &impl TableMemory, root_pa: u64, va: u64) -> WalkResult {
    let mut descriptors = [None; 4];
    if !is_canonical(va) {
        return WalkResult {
            descriptors,
            outcome: Err(WalkFault { level: ROOT_LEVEL }),
        };
    }
    let mut table_pa = root_pa;
    for level in ROOT_LEVEL..=LEAF_LEVEL {
        let desc = Descriptor::from_raw(mem.read_entry(table_pa, table_index(va, level)));
        descriptors[level as usize] = Some(desc);
        let (pa, attrs) = match desc.kind(level) {
            DescriptorKind::Invalid => {
                return WalkResult {
                    descriptors,
                    outcome: Err(WalkFault { level }),
                };
            }
            DescriptorKind::Table { next } => {
                table_pa = next.as_u64();
                continue;
            }
            DescriptorKind::Block { pa, attrs } | DescriptorKind::Page { pa, attrs } => (pa, attrs),
        };
        let offset = va & (level_block_size(level) - 1);
        return WalkResult {
            descriptors,
            outcome: Ok(Translation {
                pa: pa.as_u64() | offset,
                level,
                attrs,
            }),
        };
    }
    unreachable!("level 3 entries decode as Page or Invalid, never Table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const PXN: u64 = 1 << 53;
    const UXN: u64 = 1 << 54;
    const AF: u64 = 1 << 10;
    const SH_INNER: u64 = 0b11 << 8;
    const AP_RO: u64 = 0b10 << 6;
    const NG: u64 = 1 << 11;

    #[test]
    fn geometry_constants() {
        assert_eq!(PAGE_SIZE, 4096);
        assert_eq!(level_block_size(0), 512 << 30);
        assert_eq!(level_block_size(1), L1_BLOCK_SIZE);
        assert_eq!(level_block_size(2), L2_BLOCK_SIZE);
        assert_eq!(level_block_size(3), L3_PAGE_SIZE);
        let va = (5 << 39) | (6 << 30) | (7 << 21) | (8 << 12) | 0x123;
        assert_eq!(
            [0, 1, 2, 3].map(|l| table_index(va, l)),
            [5, 6, 7, 8],
            "each level indexes its own 9 bits"
        );
        assert_eq!(table_index(0xffff_ffff_ffff_ffff, 0), 511);
        assert_eq!(OUTPUT_ADDRESS_MASK, 0x0000_ffff_ffff_f000);
    }

    #[test]
    fn canonical_halves() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_ffff_ffff_ffff));
        assert!(is_canonical(0xffff_0000_0000_0000));
        assert!(is_canonical(u64::MAX));
        assert!(!is_canonical(0x0001_0000_0000_0000));
        assert!(!is_canonical(0xfffe_ffff_ffff_ffff));
    }

    #[test]
    fn mair_value_matches_indexes() {
        assert_eq!(MAIR_VALUE, 0x0044_04ff);
        assert_eq!((MAIR_VALUE >> (8 * MAIR_IDX_NORMAL)) & 0xff, 0xff);
        assert_eq!((MAIR_VALUE >> (8 * MAIR_IDX_DEVICE_nGnRE)) & 0xff, 0x04);
        assert_eq!((MAIR_VALUE >> (8 * MAIR_IDX_NORMAL_NC)) & 0xff, 0x44);
    }

    #[test]
    fn convenience_attributes_encode_exactly() {
        assert_eq!(
            Attributes::kernel_text().to_bits(),
            UXN | AF | SH_INNER | AP_RO
        );
        assert_eq!(
            Attributes::kernel_rodata().to_bits(),
            UXN | PXN | AF | SH_INNER | AP_RO
        );
        assert_eq!(
            Attributes::kernel_data().to_bits(),
            UXN | PXN | AF | SH_INNER
        );
        assert_eq!(Attributes::device().to_bits(), UXN | PXN | AF | (1 << 2));
        assert_eq!(
            Attributes::user_data_rw().to_bits(),
            UXN | PXN | AF | SH_INNER | NG
        );
        assert_eq!(
            Attributes::user_data_ro().to_bits(),
            UXN | PXN | AF | SH_INNER | NG | AP_RO
        );
        assert_eq!(
            Attributes::kernel_data().with_sw_bits(0b1010).to_bits(),
            UXN | PXN | AF | SH_INNER | (0b1010 << 55)
        );
        assert!(!Attributes::user_data_ro().access.el1_writable());
        assert!(Attributes::user_data_rw().access.el1_writable());
    }

    #[test]
    fn each_descriptor_kind_encodes_exactly() {
        let attrs = Attributes::kernel_data();
        assert_eq!(Descriptor::invalid().raw(), 0);
        assert_eq!(
            Descriptor::table(PhysAddr::new(0x4008_1000)).raw(),
            0x4008_1003
        );
        assert_eq!(
            Descriptor::page(PhysAddr::new(0x4008_2000), attrs).raw(),
            0x4008_2003 | attrs.to_bits()
        );
        assert_eq!(
            Descriptor::block(PhysAddr::new(0x4020_0000), 2, attrs).raw(),
            0x4020_0001 | attrs.to_bits()
        );
        assert_eq!(
            Descriptor::block(PhysAddr::new(0x4000_0000), 1, attrs).raw(),
            0x4000_0001 | attrs.to_bits()
        );
    }

    #[test]
    fn kind_depends_on_level() {
        let attrs = Attributes::user_data_rw();
        let table = Descriptor::table(PhysAddr::new(0x8000_0000));
        for level in 0..=2 {
            assert_eq!(
                table.kind(level),
                DescriptorKind::Table {
                    next: PhysAddr::new(0x8000_0000)
                }
            );
        }
        // The same bit pattern is a page at level 3.
        assert_eq!(
            table.kind(3),
            DescriptorKind::Page {
                pa: PhysAddr::new(0x8000_0000),
                attrs: Attributes::from_bits(0)
            }
        );
        let block = Descriptor::block(PhysAddr::new(0x8000_0000), 1, attrs);
        assert_eq!(block.kind(0), DescriptorKind::Invalid, "no level-0 blocks");
        assert_eq!(
            block.kind(1),
            DescriptorKind::Block {
                pa: PhysAddr::new(0x8000_0000),
                attrs
            }
        );
        assert_eq!(
            block.kind(2),
            DescriptorKind::Block {
                pa: PhysAddr::new(0x8000_0000),
                attrs
            }
        );
        assert_eq!(
            block.kind(3),
            DescriptorKind::Invalid,
            "bit 1 clear is reserved at L3"
        );
        // Bits [20:12] of a level-2 block are not address bits (bit 16 is nT with FEAT_BBM).
        let with_nt = Descriptor::block(PhysAddr::new(0x8020_0000), 2, attrs).raw() | 1 << 16;
        assert_eq!(
            Descriptor::from_raw(with_nt).kind(2),
            DescriptorKind::Block {
                pa: PhysAddr::new(0x8020_0000),
                attrs
            }
        );
        for level in 0..=3 {
            assert_eq!(Descriptor::invalid().kind(level), DescriptorKind::Invalid);
            // Attribute bits without the valid bit still fault.
            let stale =
                Descriptor::from_raw(Descriptor::page(PhysAddr::new(0x1000), attrs).raw() & !1);
            assert!(!stale.is_valid());
            assert_eq!(stale.kind(level), DescriptorKind::Invalid);
        }
    }

    #[test]
    #[should_panic(expected = "blocks exist at levels 1 and 2")]
    fn level_zero_block_is_refused() {
        let _ = Descriptor::block(PhysAddr::new(0), 0, Attributes::kernel_data());
    }

    #[test]
    #[should_panic(expected = "aligned to the block size")]
    fn misaligned_block_is_refused() {
        let _ = Descriptor::block(PhysAddr::new(0x4000_1000), 2, Attributes::kernel_data());
    }

    fn any_access() -> impl Strategy<Value = AccessPermission> {
        prop_oneof![
            Just(AccessPermission::El1ReadWrite),
            Just(AccessPermission::El1El0ReadWrite),
            Just(AccessPermission::El1ReadOnly),
            Just(AccessPermission::El1El0ReadOnly),
        ]
    }

    fn any_shareability() -> impl Strategy<Value = Shareability> {
        prop_oneof![
            Just(Shareability::NonShareable),
            Just(Shareability::OuterShareable),
            Just(Shareability::InnerShareable),
        ]
    }

    fn any_attributes() -> impl Strategy<Value = Attributes> {
        (
            0u8..8,
            any_access(),
            any_shareability(),
            any::<[bool; 4]>(),
            0u8..16,
        )
            .prop_map(
                |(mair_index, access, shareability, flags, sw_bits)| Attributes {
                    mair_index,
                    access,
                    shareability,
                    accessed: flags[0],
                    not_global: flags[1],
                    privileged_execute_never: flags[2],
                    user_execute_never: flags[3],
                    sw_bits,
                },
            )
    }

    proptest! {
        #[test]
        fn attributes_round_trip(attrs in any_attributes()) {
            let bits = attrs.to_bits();
            prop_assert_eq!(bits & !ATTRIBUTE_MASK, 0);
            prop_assert_eq!(Attributes::from_bits(bits), attrs);
        }

        #[test]
        fn leaf_descriptors_round_trip(
            attrs in any_attributes(),
            frame in 0u64..(1 << 36),
            level in 1u8..=3,
        ) {
            let size = level_block_size(level);
            let pa = (frame << PAGE_SHIFT) & !(size - 1);
            let (desc, expected) = if level == 3 {
                (Descriptor::page(PhysAddr::new(pa), attrs), DescriptorKind::Page { pa: PhysAddr::new(pa), attrs })
            } else {
                (Descriptor::block(PhysAddr::new(pa), level, attrs), DescriptorKind::Block { pa: PhysAddr::new(pa), attrs })
            };
            prop_assert!(desc.is_valid());
            prop_assert_eq!(desc.output_address(), PhysAddr::new(pa));
            prop_assert_eq!(desc.kind(level), expected);
            prop_assert_eq!(Descriptor::from_raw(desc.raw()), desc);
        }

        #[test]
        fn table_descriptors_round_trip(frame in 0u64..(1 << 36), level in 0u8..=2) {
            let pa = frame << PAGE_SHIFT;
            let desc = Descriptor::table(PhysAddr::new(pa));
            prop_assert_eq!(desc.kind(level), DescriptorKind::Table { next: PhysAddr::new(pa) });
            prop_assert_eq!(desc.output_address(), PhysAddr::new(pa));
            // No hierarchical attributes and no stray bits.
            prop_assert_eq!(desc.raw(), pa | 0b11);
        }
    }

    /// Translation tables in a map, with a bump allocator for new table pages.
    struct FakeTables {
        tables: HashMap<u64, [u64; ENTRIES_PER_TABLE]>,
        next_table_pa: u64,
        root_pa: u64,
    }

    impl FakeTables {
        fn new() -> Self {
            let mut tables = Self {
                tables: HashMap::new(),
                next_table_pa: 0x7_0000_0000,
                root_pa: 0,
            };
            tables.root_pa = tables.alloc_table();
            tables
        }

        fn alloc_table(&mut self) -> u64 {
            let pa = self.next_table_pa;
            self.next_table_pa += PAGE_SIZE;
            self.tables.insert(pa, [0; ENTRIES_PER_TABLE]);
            pa
        }

        /// Installs a leaf at `level`, creating intermediate tables; the slot must be free.
        fn map(&mut self, va: u64, leaf: Descriptor, level: u8) {
            let mut table_pa = self.root_pa;
            for l in 0..level {
                let index = table_index(va, l);
                let entry = Descriptor::from_raw(self.tables[&table_pa][index]);
                table_pa = match entry.kind(l) {
                    DescriptorKind::Table { next } => next.as_u64(),
                    DescriptorKind::Invalid => {
                        let next = self.alloc_table();
                        self.tables.get_mut(&table_pa).unwrap()[index] =
                            Descriptor::table(PhysAddr::new(next)).raw();
                        next
                    }
                    other => panic!("mapping over a leaf {other:?}"),
                };
            }
            let slot = &mut self.tables.get_mut(&table_pa).unwrap()[table_index(va, level)];
            assert_eq!(*slot, 0, "slot already used");
            *slot = leaf.raw();
        }
    }

    impl TableMemory for FakeTables {
        fn read_entry(&self, table_pa: u64, index: usize) -> u64 {
            // A walker following a bad pointer would panic here instead of reading garbage.
            self.tables.get(&table_pa).expect("walk left the tables")[index]
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct Mapping {
        size: u64,
        pa: u64,
        attrs: Attributes,
    }

    fn model_lookup(model: &BTreeMap<u64, Mapping>, va: u64) -> Option<Translation> {
        let (&start, m) = model.range(..=va).next_back()?;
        (va < start + m.size).then(|| Translation {
            pa: m.pa + (va - start),
            level: match m.size {
                L1_BLOCK_SIZE => 1,
                L2_BLOCK_SIZE => 2,
                _ => 3,
            },
            attrs: m.attrs,
        })
    }

    fn overlaps(model: &BTreeMap<u64, Mapping>, va: u64, size: u64) -> bool {
        let before = model
            .range(..=va)
            .next_back()
            .is_some_and(|(&s, m)| va < s + m.size);
        before || model.range(va..va + size).next().is_some()
    }

    /// VAs packed into a few slots per level so mappings of different sizes collide and share
    /// tables often: two level-0 slots, four 1 GiB slots, eight 2 MiB slots, sixteen pages.
    fn clustered_va() -> impl Strategy<Value = u64> {
        (0u64..2, 0u64..4, 0u64..8, 0u64..16, 0u64..PAGE_SIZE)
            .prop_map(|(a, b, c, d, off)| (a << 39) | (b << 30) | (c << 21) | (d << 12) | off)
    }

    fn lookup_va() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => clustered_va(),
            1 => clustered_va().prop_map(|va| va | (0xffff << VA_BITS)),
            1 => 0u64..(1 << VA_BITS),
            1 => any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn walk_agrees_with_model(
            requests in proptest::collection::vec(
                (clustered_va(), 1u8..=3, 0u64..(1 << 20), any_attributes()),
                1..40,
            ),
            lookups in proptest::collection::vec(lookup_va(), 1..64),
        ) {
            let mut tables = FakeTables::new();
            let mut model = BTreeMap::new();
            for (va, level, frame, attrs) in requests {
                let size = level_block_size(level);
                let va = va & !(size - 1);
                let pa = (frame << PAGE_SHIFT) & !(size - 1);
                if overlaps(&model, va, size) {
                    continue;
                }
                let leaf = if level == 3 {
                    Descriptor::page(PhysAddr::new(pa), attrs)
                } else {
                    Descriptor::block(PhysAddr::new(pa), level, attrs)
                };
                tables.map(va, leaf, level);
                model.insert(va, Mapping { size, pa, attrs });
            }
            let mapped: Vec<u64> = model.keys().copied().collect();
            let probes = lookups.into_iter().chain(mapped.iter().map(|&va| va | 0x7f8));
            for va in probes {
                let result = walk(&tables, tables.root_pa, va);
                let expected = if is_canonical(va) && va < (1 << VA_BITS) {
                    model_lookup(&model, va)
                } else if is_canonical(va) {
                    // High-half VAs index with bits [47:0] only, like TTBR1 would.
                    model_lookup(&model, va & ((1 << VA_BITS) - 1))
                } else {
                    None
                };
                prop_assert_eq!(result.translation(), expected, "va {:#x}", va);
                // The walk reports exactly the levels it read, each one the real entry.
                let last = match result.outcome {
                    Ok(t) => Some(t.level),
                    Err(f) if is_canonical(va) => Some(f.level),
                    Err(f) => { prop_assert_eq!(f.level, 0); None }
                };
                for level in 0..4u8 {
                    let seen = result.descriptors[level as usize];
                    prop_assert_eq!(seen.is_some(), last.is_some_and(|l| level <= l));
                }
                if let Some(t) = expected {
                    let leaf = result.descriptors[t.level as usize].unwrap();
                    prop_assert_eq!(leaf.output_address().as_u64() | (va & (level_block_size(t.level) - 1)), t.pa);
                }
            }
        }
    }

    #[test]
    fn reserved_encodings_fault_at_their_level() {
        let mut tables = FakeTables::new();
        let root = tables.root_pa;
        // Level-0 "block" (bit 1 clear): reserved for 4K/48-bit, faults at level 0.
        tables.tables.get_mut(&root).unwrap()[0] = 0x4000_0000 | 1;
        let r = walk(&tables, root, 0x1234);
        assert_eq!(r.outcome, Err(WalkFault { level: 0 }));
        assert_eq!(r.descriptors[0], Some(Descriptor::from_raw(0x4000_0001)));
        assert_eq!(r.descriptors[1], None);

        // Level-3 entry with bit 1 clear: faults at level 3 after three table hops.
        let mut tables = FakeTables::new();
        let va = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12);
        tables.map(
            va,
            Descriptor::page(PhysAddr::new(0x9000), Attributes::kernel_data()),
            3,
        );
        assert_eq!(
            walk(&tables, tables.root_pa, va)
                .translation()
                .map(|t| t.pa),
            Some(0x9000)
        );
        let l3 = tables.next_table_pa - PAGE_SIZE;
        tables.tables.get_mut(&l3).unwrap()[4] &= !0b10;
        let r = walk(&tables, tables.root_pa, va);
        assert_eq!(r.outcome, Err(WalkFault { level: 3 }));
        assert!(r.descriptors.iter().all(Option::is_some));

        // Non-canonical VA: level-0 fault without reading memory.
        let r = walk(&tables, tables.root_pa, 0x0001_0000_0000_0000);
        assert_eq!(r.outcome, Err(WalkFault { level: 0 }));
        assert_eq!(r.descriptors, [None; 4]);
    }

    #[test]
    fn block_translation_keeps_offset() {
        let mut tables = FakeTables::new();
        let attrs = Attributes::user_data_ro();
        tables.map(
            1 << 30,
            Descriptor::block(PhysAddr::new(0x8000_0000), 1, attrs),
            1,
        );
        tables.map(
            0x20_0000,
            Descriptor::block(PhysAddr::new(0x4060_0000), 2, attrs),
            2,
        );
        assert_eq!(
            walk(&tables, tables.root_pa, (1 << 30) + 0x1234_5678).translation(),
            Some(Translation {
                pa: 0x9234_5678,
                level: 1,
                attrs
            })
        );
        assert_eq!(
            walk(&tables, tables.root_pa, 0x2f_edcb).translation(),
            Some(Translation {
                pa: 0x406f_edcb,
                level: 2,
                attrs
            })
        );
        assert_eq!(
            walk(&tables, tables.root_pa, 0x40_0000).outcome,
            Err(WalkFault { level: 2 })
        );
    }
}
