//! Typed addresses: [`PhysAddr`] for physical addresses (frames, tables, descriptors' output
//! addresses) and [`VirtAddr`] for virtual ones (user VAs in an address space, the kernel's
//! linear map), so the two cannot be swapped by accident (modelled on `aarch64-paging`'s
//! `PhysicalAddress` and `VirtualAddress`).
//!
//! Both are `#[repr(transparent)]` wrappers of a `u64` with the same arithmetic: an address plus
//! or minus a byte count is an address of the same kind, the difference of two addresses is a
//! byte count, and alignment is to a power of two. Formatting prints the number in hex: `{}` and
//! `{:?}` as `0x...`, `{:x}`/`{:#x}` exactly as for the `u64`. Converting between the two kinds
//! is a matter of the memory map, not of these types: the kernel's linear map does it in
//! `aarch64::layout` (`phys_to_virt`, `virt_to_phys`).

use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// log2 of the translation granule and of the smallest mapping.
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            #[doc = concat!("The ", $what, " address 0.")]
            pub const ZERO: Self = Self(0);

            #[doc = concat!("The ", $what, " address `addr`.")]
            #[inline(always)]
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The address as a number.
            #[inline(always)]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// The address rounded down to a multiple of `align` (a power of two).
            #[inline(always)]
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two(), "alignment must be a power of two");
                Self(self.0 & !(align - 1))
            }

            /// The address rounded up to a multiple of `align` (a power of two).
            ///
            /// # Panics
            /// If the rounded address does not fit in 64 bits.
            #[inline(always)]
            pub const fn align_up(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two(), "alignment must be a power of two");
                match self.0.checked_add(align - 1) {
                    Some(a) => Self(a & !(align - 1)),
                    None => panic!("address overflow in align_up"),
                }
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline(always)]
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two(), "alignment must be a power of two");
                self.0 & (align - 1) == 0
            }

            /// The offset of the address inside its 4 KiB page.
            #[inline(always)]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// `self + bytes`, or `None` if that overflows.
            #[inline(always)]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` if that underflows.
            #[inline(always)]
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }
        }

        impl Add<u64> for $name {
            type Output = Self;
            #[inline(always)]
            fn add(self, bytes: u64) -> Self {
                Self(self.0 + bytes)
            }
        }

        impl AddAssign<u64> for $name {
            #[inline(always)]
            fn add_assign(&mut self, bytes: u64) {
                self.0 += bytes;
            }
        }

        impl Sub<u64> for $name {
            type Output = Self;
            #[inline(always)]
            fn sub(self, bytes: u64) -> Self {
                Self(self.0 - bytes)
            }
        }

        impl SubAssign<u64> for $name {
            #[inline(always)]
            fn sub_assign(&mut self, bytes: u64) {
                self.0 -= bytes;
            }
        }

        /// The distance in bytes from `rhs` up to `self`.
        ///
        /// # Panics
        /// If `rhs > self` (with overflow checks on).
        impl Sub for $name {
            type Output = u64;
            #[inline(always)]
            fn sub(self, rhs: Self) -> u64 {
                self.0 - rhs.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical address: a frame, a translation table page, a descriptor's output address.
    PhysAddr,
    "physical"
);

address_type!(
    /// A virtual address: a user address in an address space (TTBR0), or a kernel one (TTBR1).
    VirtAddr,
    "virtual"
);

impl VirtAddr {
    /// A raw pointer to the address (for a kernel address: the linear map, the image).
    #[inline(always)]
    pub const fn as_ptr<T>(self) -> *const T {
        self.0 as *const T
    }

    /// A raw mutable pointer to the address.
    #[inline(always)]
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use proptest::prelude::*;

    #[test]
    fn formatting() {
        let pa = PhysAddr::new(0x4008_1000);
        assert_eq!(format!("{pa}"), "0x40081000");
        assert_eq!(format!("{pa:?}"), "0x40081000");
        assert_eq!(format!("{pa:#x}"), "0x40081000");
        assert_eq!(format!("{pa:x}"), "40081000");
        assert_eq!(format!("{pa:#018x}"), format!("{:#018x}", 0x4008_1000u64));
        let va = VirtAddr::new(0xffff_0000_0000_1234);
        assert_eq!(format!("{va:#x}"), "0xffff000000001234");
        assert_eq!(format!("{:?}", Some(va)), "Some(0xffff000000001234)");
        assert_eq!(format!("{}", VirtAddr::ZERO), "0x0");
    }

    #[test]
    fn arithmetic() {
        let mut va = VirtAddr::new(0x1000);
        assert_eq!(va + 0x234, VirtAddr::new(0x1234));
        assert_eq!(va - 0x1000, VirtAddr::ZERO);
        va += 0x2000;
        assert_eq!(va, VirtAddr::new(0x3000));
        va -= 0x1000;
        assert_eq!(va.as_u64(), 0x2000);
        assert_eq!(VirtAddr::new(0x5000) - VirtAddr::new(0x2000), 0x3000);
        assert_eq!(PhysAddr::new(5).checked_sub(6), None);
        assert_eq!(PhysAddr::new(5).checked_sub(5), Some(PhysAddr::ZERO));
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(PhysAddr::new(1).checked_add(1), Some(PhysAddr::new(2)));
        assert!(PhysAddr::new(1) < PhysAddr::new(2));
    }

    #[test]
    fn alignment() {
        let pa = PhysAddr::new(0x4020_1234);
        assert_eq!(pa.align_down(0x1000), PhysAddr::new(0x4020_1000));
        assert_eq!(pa.align_up(0x1000), PhysAddr::new(0x4020_2000));
        assert_eq!(pa.align_down(1 << 21), PhysAddr::new(0x4020_0000));
        assert_eq!(pa.align_up(1 << 21), PhysAddr::new(0x4040_0000));
        assert_eq!(pa.page_offset(), 0x234);
        assert!(!pa.is_aligned(0x1000));
        assert!(pa.align_down(0x1000).is_aligned(0x1000));
        assert_eq!(
            PhysAddr::new(0x2000).align_up(0x1000),
            PhysAddr::new(0x2000)
        );
        assert!(VirtAddr::new(7).is_aligned(1));
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn align_up_overflow_panics() {
        let _ = VirtAddr::new(u64::MAX).align_up(0x1000);
    }

    #[test]
    fn pointers() {
        let x = 7u64;
        let va = VirtAddr::new(&x as *const u64 as u64);
        // SAFETY: `va` is the address of `x`, live and aligned.
        assert_eq!(unsafe { *va.as_ptr::<u64>() }, 7);
        assert_eq!(va.as_mut_ptr::<u64>() as *const u64, &x as *const u64);
    }

    proptest! {
        #[test]
        fn align_agrees_with_integers(addr in any::<u64>(), shift in 0u32..40) {
            let align = 1u64 << shift;
            let a = VirtAddr::new(addr);
            let down = a.align_down(align);
            prop_assert!(down.is_aligned(align));
            prop_assert!(down <= a);
            prop_assert!(a - down < align);
            prop_assert_eq!(down.as_u64(), addr - addr % align);
            prop_assert_eq!(a.is_aligned(align), addr % align == 0);
            if let Some(limit) = addr.checked_add(align - 1) {
                let up = a.align_up(align);
                prop_assert!(up.is_aligned(align));
                prop_assert!(up >= a);
                prop_assert!(up - a < align);
                prop_assert_eq!(up.as_u64(), limit - limit % align);
            }
        }

        #[test]
        fn add_sub_round_trip(addr in any::<u64>(), bytes in any::<u64>()) {
            let a = PhysAddr::new(addr);
            match a.checked_add(bytes) {
                Some(b) => {
                    prop_assert_eq!(b, a + bytes);
                    prop_assert_eq!(b - a, bytes);
                    prop_assert_eq!(b - bytes, a);
                    prop_assert_eq!(b.checked_sub(bytes), Some(a));
                }
                None => prop_assert!(addr.checked_add(bytes).is_none()),
            }
            prop_assert_eq!(a.checked_sub(bytes).map(PhysAddr::as_u64), addr.checked_sub(bytes));
            prop_assert_eq!(a.page_offset(), addr % 4096);
        }
    }
}
