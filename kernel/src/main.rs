//! The kernel binary: the two entry points `boot.S` jumps to, and the panic handler. Everything
//! else lives in the library (see its crate docs for the layers and the boot flow).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use aarch64_cpu::registers::{TPIDR_EL1, Writeable};

/// The boot CPU's first Rust function: MMU on, running in the TTBR1 half on its boot stack.
/// `dtb_pa` is x0 at entry (0 for an ELF boot), `boot_el` the EL QEMU entered the kernel at.
#[unsafe(no_mangle)]
pub extern "C" fn kernel_main(dtb_pa: u64, boot_el: u64) -> ! {
    TPIDR_EL1.set(0);
    broadside::boot::boot_cpu_main(dtb_pa, boot_el)
}

/// A secondary CPU's first Rust function, on its own stacks, with the final kernel tables.
#[unsafe(no_mangle)]
pub extern "C" fn secondary_main(cpu: u64, _boot_el: u64) -> ! {
    TPIDR_EL1.set(cpu);
    broadside::boot::secondary_cpu_main(cpu as usize)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    broadside::boot::fatal_panic(info)
}
