//! Exception handling: the vector table (`vectors.S`), the saved register frame, decoding of
//! ESR_EL1, fix-ups for expected faults, and the fatal report for everything else.
//!
//! Expected faults — a toucher reading a page that was just unmapped, the self-test writing to
//! kernel text — are handled by fix-ups as in Linux's exception tables: the probe functions below
//! record `(faulting PC, resume PC)` pairs in the `.fixup_table` section, and a synchronous
//! exception whose ELR is in the table resumes at the recorded PC with the fault remembered for
//! the probe to return. Any other synchronous exception, SError or FIQ is fatal: the CPU prints
//! the decoded syndrome, FAR, ELR, every register and a frame-pointer backtrace, and the kernel
//! exits with code 3.

use core::arch::asm;
use core::fmt::{self, Write as _};

/// Saved state of the interrupted context. The layout is fixed by `vectors.S`.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30.
    /// x0..x30 of the interrupted context.
    pub x: [u64; 31],
    /// The interrupted stack pointer.
    pub sp: u64,
    /// ELR_EL1: where the exception was taken (the return address).
    pub elr: u64,
    /// SPSR_EL1: the interrupted PSTATE.
    pub spsr: u64,
    /// ESR_EL1: the syndrome (exception class and details).
    pub esr: u64,
    /// FAR_EL1: the faulting virtual address, for aborts.
    pub far: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
// `vectors.S` stores the fields pairwise at these offsets (x0..x30 and sp as 16 pairs, then
// elr/spsr at 16 * 16 and esr/far at 17 * 16), and SP must stay 16-byte aligned.
const _: () = assert!(
    FRAME_SIZE == 18 * 16
        && core::mem::offset_of!(TrapFrame, sp) == 15 * 16 + 8
        && core::mem::offset_of!(TrapFrame, elr) == 16 * 16
        && core::mem::offset_of!(TrapFrame, esr) == 17 * 16
);

core::arch::global_asm!(include_str!("vectors.S"), FRAME_SIZE = const FRAME_SIZE);

/// Which vector an exception came through (the `kind` `vectors.S` passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorKind {
    /// An instruction's own exception: aborts, traps, SVC/HVC, undefined instructions.
    Synchronous,
    /// An interrupt (the GIC's IRQ line).
    Irq,
    /// A fast interrupt (unused: anything here is unexpected).
    Fiq,
    /// An asynchronous system error.
    SError,
}

impl VectorKind {
    fn from_index(kind: u64) -> (Self, &'static str) {
        let origin = match kind / 4 {
            0 => "current EL, SP_EL0",
            1 => "current EL, SP_EL1",
            2 => "lower EL, AArch64",
            _ => "lower EL, AArch32",
        };
        let k = match kind % 4 {
            0 => Self::Synchronous,
            1 => Self::Irq,
            2 => Self::Fiq,
            _ => Self::SError,
        };
        (k, origin)
    }
}

/// ESR_EL1 decoded for humans (Arm ARM D24.2.43, ESR_ELx.EC).
#[derive(Clone, Copy)]
pub struct Syndrome(pub u64);

impl Syndrome {
    /// Exception class, ESR[31:26].
    pub fn class(self) -> u64 {
        (self.0 >> 26) & 0x3f
    }

    /// Whether this is a data or instruction abort.
    pub fn is_abort(self) -> bool {
        matches!(self.class(), 0x20 | 0x21 | 0x24 | 0x25)
    }

    /// For aborts: whether it was a permission fault (DFSC/IFSC 0b0011xx).
    pub fn is_permission_fault(self) -> bool {
        self.is_abort() && (self.0 & 0x3c) == 0x0c
    }

    /// For aborts: whether it was a translation fault (DFSC/IFSC 0b0001xx).
    pub fn is_translation_fault(self) -> bool {
        self.is_abort() && (self.0 & 0x3c) == 0x04
    }

    /// For data aborts: whether the access was a write (ISS.WnR).
    pub fn is_write(self) -> bool {
        self.class() == 0x25 && self.0 & (1 << 6) != 0
    }

    /// The name of the exception class.
    pub fn class_name(self) -> &'static str {
        match self.class() {
            0x00 => "unknown reason",
            0x01 => "WFI/WFE trapped",
            // CPACR_EL1.FPEN = 0b00 (boot.S) traps every FP/SIMD instruction at EL1 here
            // (Arm ARM D19.2, CPACR_EL1; EC 0x07 in ESR_EL1): the kernel never enables it.
            0x07 => {
                "FP/SIMD instruction trapped: the kernel is built soft-float (CPACR_EL1.FPEN=0)"
            }
            0x0e => "illegal execution state",
            0x15 => "SVC (AArch64)",
            0x16 => "HVC (AArch64)",
            0x17 => "SMC (AArch64)",
            0x18 => "MSR/MRS/system instruction trapped",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort from the current EL",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort from the current EL",
            0x26 => "SP alignment fault",
            0x2f => "SError",
            0x30 | 0x31 => "breakpoint",
            0x32 | 0x33 => "software step",
            0x34 | 0x35 => "watchpoint",
            0x3c => "BRK instruction",
            _ => "other",
        }
    }

    /// The fault status code of an abort, decoded.
    pub fn fault_status(self) -> &'static str {
        if !self.is_abort() {
            return "";
        }
        match self.0 & 0x3f {
            0x00..=0x03 => "address size fault",
            0x04..=0x07 => "translation fault",
            0x08..=0x0b => "access flag fault",
            0x0c..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            0x30 => "TLB conflict abort",
            _ => "other fault",
        }
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR {:#010x}: EC {:#04x} {}",
            self.0,
            self.class(),
            self.class_name()
        )?;
        if self.is_abort() {
            let level = self.0 & 0x3;
            write!(f, ", {} at level {level}", self.fault_status())?;
            if self.class() == 0x25 {
                write!(f, ", {}", if self.is_write() { "write" } else { "read" })?;
            }
        }
        Ok(())
    }
}

/// A fault that a probe recovered from.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The syndrome of the recovered fault.
    pub esr: Syndrome,
    /// The address it faulted on.
    pub far: u64,
}

impl fmt::Debug for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One entry of the fix-up table: a probe instruction that may fault and where to resume.
#[repr(C)]
struct FixupEntry {
    fault_pc: u64,
    resume_pc: u64,
}

unsafe extern "C" {
    static __fixup_table_start: FixupEntry;
    static __fixup_table_end: FixupEntry;
}

fn fixup_table() -> &'static [FixupEntry] {
    // SAFETY: the linker script places every `.fixup_table` entry, each two u64 written by the
    // `probe_*` asm below, between these symbols.
    unsafe {
        let start = &__fixup_table_start as *const FixupEntry;
        let end = &__fixup_table_end as *const FixupEntry;
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

/// The resume PC for a fault at `pc`, if `pc` is a probe instruction.
fn search_fixup(pc: u64) -> Option<u64> {
    fixup_table()
        .iter()
        .find(|e| e.fault_pc == pc)
        .map(|e| e.resume_pc)
}

/// Runs one instruction under a fix-up: `{ok}` is 1 if it completed, 0 if it faulted (execution
/// then resumes right after it, with the fault recorded for [`take_recovered_fault`]). The
/// instruction is labelled `1:` and its resume point `3:`; the pair goes to `.fixup_table`.
macro_rules! asm_with_fixup {
    ($insn:literal, $($operands:tt)*) => {
        core::arch::asm!(
            "mov {ok}, #1",
            concat!("1: ", $insn),
            "b 2f",
            "3: mov {ok}, #0",
            "2:",
            ".pushsection .fixup_table, \"a\"",
            ".balign 8",
            ".quad 1b, 3b",
            ".popsection",
            $($operands)*
        )
    };
}
pub(crate) use asm_with_fixup;

/// Reads the u64 at `addr`, returning the fault instead of dying if the access faults.
///
/// # Safety
///
/// If `addr` is mapped, it must be valid to read as a u64 (no MMIO with read side effects).
#[inline(always)]
pub unsafe fn probe_read_u64(addr: *const u64) -> Result<u64, Fault> {
    let val: u64;
    let ok: u64;
    // SAFETY: the load is covered by a fix-up entry, so a fault resumes at 3: with ok = 0; the
    // caller guarantees a successful load is sound.
    unsafe {
        asm_with_fixup!(
            "ldr {val}, [{addr}]",
            addr = in(reg) addr,
            val = out(reg) val,
            ok = out(reg) ok,
            options(nostack, readonly),
        );
    }
    if ok == 1 {
        Ok(val)
    } else {
        Err(take_recovered_fault())
    }
}

/// Writes `val` to `addr`, returning the fault instead of dying if the access faults.
///
/// # Safety
///
/// If `addr` is mapped and writable, writing a u64 there must be sound.
#[inline(always)]
pub unsafe fn probe_write_u64(addr: *mut u64, val: u64) -> Result<(), Fault> {
    let ok: u64;
    // SAFETY: the store is covered by a fix-up entry; the caller guarantees a successful store is
    // sound.
    unsafe {
        asm_with_fixup!(
            "str {val}, [{addr}]",
            addr = in(reg) addr,
            val = in(reg) val,
            ok = out(reg) ok,
            options(nostack),
        );
    }
    if ok == 1 {
        Ok(())
    } else {
        Err(take_recovered_fault())
    }
}

/// Reads the aligned u64 at `va` anywhere but the device window, returning the fault instead
/// of dying if the access faults: how checks look through the MMU (a user page through TTBR0,
/// a guard page that must be unmapped, the image's sections).
///
/// # Panics
/// If `va` is not 8-byte aligned or lies at or above [`MMIO_VBASE`](super::layout::MMIO_VBASE),
/// where a read may have side effects (a UART's data register pops a byte).
pub fn probe_read(va: crate::VirtAddr) -> Result<u64, Fault> {
    let addr = va.as_u64();
    assert!(
        addr.is_multiple_of(8) && addr < super::layout::MMIO_VBASE,
        "probe_read at {addr:#x}: unaligned or in the device window"
    );
    // SAFETY: below the device window every mapping is normal memory (address spaces' pages in
    // TTBR0, then the linear map, the image and the stacks), where a read has no side effect.
    // The load is an aligned 64-bit LDR in asm: single-copy atomic, it sees a concurrent
    // writer's old or new value, like a relaxed atomic load, and creates no reference.
    unsafe { probe_read_u64(addr as *const u64) }
}

/// Writes `val` to the aligned u64 at user address `va` through the address space loaded in
/// TTBR0 (as Linux's `put_user`), returning the fault instead of dying if the access faults.
///
/// # Panics
/// If `va` is not 8-byte aligned or not in the TTBR0 half, or if this CPU still has the boot
/// identity map in TTBR0 (through which user addresses would reach the kernel's own memory).
pub fn probe_write_user(va: crate::VirtAddr, val: u64) -> Result<(), Fault> {
    let addr = va.as_u64();
    assert!(
        addr.is_multiple_of(8) && addr < 1 << 48,
        "probe_write_user at {addr:#x}: unaligned or not a user address"
    );
    assert_ne!(
        super::mmu::ttbr0() & TTBR_BADDR_MASK,
        super::boot::boot_idmap_pa(),
        "probe_write_user with the boot identity map loaded"
    );
    // SAFETY: a TTBR0 address reaches only what an address space mapped for its user: its
    // data frames and shared objects, which the kernel reads and writes only with volatile or
    // asm accesses of whole words (stamps, poison, write counters), never through references.
    // The store is an aligned 64-bit STR: single-copy atomic, like a relaxed atomic store.
    unsafe { probe_write_u64(addr as *mut u64, val) }
}

/// TTBRn_EL1's table address bits (BADDR, 4 KiB granule, 48-bit PAs).
const TTBR_BADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Tries to write the word at `va`, in the image's text or read-only data, back with the value
/// it holds: `Err` with the permission fault when the mapping is read-only, as W^X requires;
/// `Ok` if the write went through (a W^X bug, with nothing changed).
///
/// # Panics
/// If `va` is unaligned or outside the image's text and read-only data.
pub fn probe_rewrite_image_readonly(va: crate::VirtAddr) -> Result<(), Fault> {
    let image = super::layout::ImageLayout::get();
    let addr = va.as_u64();
    assert!(
        addr.is_multiple_of(8) && (image.start..image.rodata_end).contains(&addr),
        "probe_rewrite_image_readonly at {addr:#x}: not in the image's text or rodata"
    );
    let word = probe_read(va)?;
    // SAFETY: text and read-only data are never written by the kernel, so no other access
    // races with this store, and a store that is (wrongly) allowed writes the word back with
    // the value it already holds: code and constants stay as they were.
    unsafe { probe_write_u64(addr as *mut u64, word) }
}

/// `bug=fault`: a load from an address no mapping ever covers (in the kernel half, far above
/// every device the device window maps), with no fix-up: the fatal exception handler ends the
/// run. Returns what was read only if the load did not fault, which is a bug in the layout or
/// in the tables.
pub fn load_from_unmapped() -> u64 {
    let addr = UNMAPPED_VA as *const u64;
    // SAFETY: the layout maps nothing at `UNMAPPED_VA` (the device window maps devices at
    // `MMIO_VBASE` + their physical address, all far below it), so the load faults and the
    // fatal handler never returns.
    unsafe { addr.read_volatile() }
}

/// Where [`load_from_unmapped`] reads: 32 TiB above the device window's base.
const UNMAPPED_VA: u64 = 0xffff_e000_0000_0000;

/// `bug=fp`: one FP/SIMD instruction (`fmov d0, xzr`, as its encoding: the soft-float
/// target's assembler refuses FP registers, "instruction requires: fp-armv8", which is the
/// point of the target). CPACR_EL1.FPEN = 0b00 makes it trap (ESR_EL1.EC 0x07) before it
/// writes d0, and the trap is fatal. Returns only if it did not trap.
pub fn execute_fp_instruction() {
    // SAFETY: deliberately a trapping instruction: it never completes, and the trap is fatal
    // (no fix-up covers it). Were FP enabled by a bug it would write d0, which soft-float code
    // never uses: no register or memory Rust relies on changes.
    unsafe { core::arch::asm!(".inst 0x9e6703e0", options(nomem, nostack)) };
}

fn take_recovered_fault() -> Fault {
    let pc = broadside_base::percpu::this_cpu();
    let esr = pc
        .last_fault_esr
        .load(core::sync::atomic::Ordering::Relaxed);
    let far = pc
        .last_fault_far
        .load(core::sync::atomic::Ordering::Relaxed);
    Fault {
        esr: Syndrome(esr),
        far,
    }
}

/// What the kernel does with an exception nothing expected: report it and exit. Set once at
/// boot by the top of the kernel ([`set_fatal_handler`]); the architecture layer does not know
/// how the kernel reports and exits, and must not import it.
pub type FatalHandler = fn(what: &str, origin: &str, frame: &TrapFrame) -> !;

static FATAL_HANDLER: spin::Once<FatalHandler> = spin::Once::new();

/// Installs the handler for unexpected exceptions (once, at boot).
pub fn set_fatal_handler(handler: FatalHandler) {
    FATAL_HANDLER.call_once(|| handler);
}

/// Hands an unexpected exception to the installed handler; before there is one, parks the CPU
/// (nothing could report it yet: the console is not up).
fn fatal(what: &str, origin: &str, frame: &TrapFrame) -> ! {
    match FATAL_HANDLER.get() {
        Some(handler) => handler(what, origin, frame),
        None => loop {
            super::cpu::wfi();
        },
    }
}

/// Called by `vectors.S` for every exception taken to EL1.
#[unsafe(no_mangle)]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let (vector, origin) = VectorKind::from_index(kind);
    match vector {
        VectorKind::Irq if kind < 8 => super::gic::handle_irq(),
        VectorKind::Synchronous if kind < 8 => {
            if let Some(resume) = search_fixup(frame.elr) {
                let cpu = broadside_base::percpu::this_cpu();
                cpu.last_fault_esr
                    .store(frame.esr, core::sync::atomic::Ordering::Relaxed);
                cpu.last_fault_far
                    .store(frame.far, core::sync::atomic::Ordering::Relaxed);
                broadside_base::stats::count(broadside_base::stats::Counter::FaultsFixedUp);
                frame.elr = resume;
            } else {
                fatal(vector_name(vector), origin, frame);
            }
        }
        _ => fatal(vector_name(vector), origin, frame),
    }
}

fn vector_name(v: VectorKind) -> &'static str {
    match v {
        VectorKind::Synchronous => "synchronous exception",
        VectorKind::Irq => "IRQ",
        VectorKind::Fiq => "FIQ",
        VectorKind::SError => "SError",
    }
}

impl TrapFrame {
    /// Prints the syndrome, addresses, registers and a backtrace of the interrupted context.
    pub fn dump(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let esr = Syndrome(self.esr);
        writeln!(out, "  {esr}")?;
        writeln!(
            out,
            "  FAR {:#018x}  ELR {:#018x}  SPSR {:#010x}",
            self.far, self.elr, self.spsr
        )?;
        for row in 0..8 {
            let mut line = heapless_line();
            for col in 0..4 {
                let i = row * 4 + col;
                if i < 31 {
                    let _ = write!(line, " x{i:<2} {:#018x}", self.x[i]);
                } else {
                    let _ = write!(line, " sp  {:#018x}", self.sp);
                }
            }
            writeln!(out, " {}", line.as_str())?;
        }
        writeln!(out, "  backtrace:")?;
        writeln!(out, "    #0 {:#018x}", self.elr)?;
        writeln!(out, "    #1 {:#018x} (lr)", self.x[30])?;
        backtrace_from(self.x[29], 2, out)
    }
}

/// Walks AArch64 frame records (x29 -> [prev x29, x30]) from `fp`, printing return addresses.
/// Stops at a null or misaligned frame pointer, one outside the kernel half, or after 32 frames.
pub fn backtrace_from(mut fp: u64, first: usize, out: &mut dyn fmt::Write) -> fmt::Result {
    for depth in first..first + 32 {
        if fp == 0 || !fp.is_multiple_of(16) || fp < super::layout::PAGE_OFFSET {
            break;
        }
        // SAFETY: the probe recovers if the frame pointer leads to an unmapped address.
        let (Ok(next), Ok(lr)) = (unsafe { probe_read_u64(fp as *const u64) }, unsafe {
            probe_read_u64((fp + 8) as *const u64)
        }) else {
            writeln!(out, "    (frame record at {fp:#x} unreadable)")?;
            break;
        };
        if lr == 0 {
            break;
        }
        writeln!(out, "    #{depth} {lr:#018x}")?;
        if next <= fp {
            break;
        }
        fp = next;
    }
    Ok(())
}

/// A fixed-size line buffer for formatting register rows without allocating.
struct LineBuf {
    buf: [u8; 128],
    len: usize,
}

fn heapless_line() -> LineBuf {
    LineBuf {
        buf: [0; 128],
        len: 0,
    }
}

impl LineBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Returns this function's caller's frame pointer, for backtraces from a panic.
#[inline(always)]
pub fn current_frame_pointer() -> u64 {
    let fp: u64;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}
