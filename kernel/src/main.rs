//! The kernel binary: the two entry points `boot.S` jumps to (defined by the architecture
//! layer's `entry_points!`, which exports the symbols), and the panic handler. Everything else
//! lives in the library (see its crate docs for the layers and the boot flow).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

broadside_arch::entry_points!(
    boot: broadside::boot::boot_cpu_main,
    secondary: broadside::boot::secondary_cpu_main,
);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    broadside::boot::fatal_panic(info)
}
