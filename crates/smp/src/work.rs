//! Running a function on every online CPU: the boot CPU posts `fn(cpu, arg)` to each secondary's
//! per-CPU slot, runs it itself, and waits for all of them. Secondaries wait for work in
//! [`idle_loop`], in WFI between timer ticks (an RCU extended quiescent state).

use super::percpu::{self, CpuState};
use broadside_arch::aarch64::cpu;
use core::sync::atomic::Ordering;

/// A function every CPU runs: `(logical cpu index, argument)`.
pub type WorkFn = fn(usize, usize);

/// Runs `f(cpu, arg)` on every online CPU (this one included) and returns when all are done.
pub fn run_on_all(f: WorkFn, arg: usize) {
    let me = broadside_base::cpu_id();
    let mut expected = [0u64; broadside_base::config::MAX_CPUS];
    for c in percpu::online_cpus() {
        if c.index == me {
            continue;
        }
        expected[c.index] = c.work_done.load(Ordering::Acquire) + 1;
        c.work_arg.store(arg, Ordering::Relaxed);
        c.work_fn.store(f as *const () as usize, Ordering::Release);
        broadside_arch::aarch64::gic::send_sgi(
            super::ipi::SGI_KICK,
            c.mpidr.load(Ordering::Relaxed),
        );
    }
    let this = percpu::this_cpu();
    this.set_state(CpuState::Working);
    f(me, arg);
    this.set_state(CpuState::Idle);
    for c in percpu::online_cpus() {
        if c.index == me {
            continue;
        }
        while c.work_done.load(Ordering::Acquire) < expected[c.index] {
            broadside_sync::wait::wait_relax();
        }
    }
}

/// A secondary CPU's loop: run posted work, otherwise sleep until the next interrupt.
pub fn idle_loop() -> ! {
    let this = percpu::this_cpu();
    loop {
        let f = this.work_fn.swap(0, Ordering::Acquire);
        if f != 0 {
            // SAFETY: `run_on_all` stores only `WorkFn` pointers here.
            let f: WorkFn = unsafe { core::mem::transmute::<usize, WorkFn>(f) };
            this.set_state(CpuState::Working);
            f(this.index, this.work_arg.load(Ordering::Relaxed));
            this.set_state(CpuState::Idle);
            this.work_done.fetch_add(1, Ordering::Release);
            continue;
        }
        broadside_sync::wait::idle_wait();
        cpu::relax();
    }
}
