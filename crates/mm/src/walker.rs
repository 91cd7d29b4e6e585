//! The lockless software page-table walker: broadside's analogue of Linux's GUP-fast
//! (`gup_fast` in mm/gup.c).
//!
//! With IRQs masked (the RCU read side, [rule 3](broadside_base::rules#rule-3)) it reads the root and each level with single
//! atomic loads; at the leaf it takes a reference on the frame if the count is not zero
//! (`try_grab_folio_fast`), then re-reads every entry it came through and backs out if any
//! changed ([rule 4](broadside_base::rules#rule-4)). Masking IRQs is what keeps the tables it walks alive: a grace period cannot
//! end while this CPU cannot take the tick that reports its quiescent state, so the table-free
//! path cannot free them.
//!
//! It also checks what the kernel promises: every table it enters must still be a table of this
//! space at the expected level and generation, must not hold poison, and a pinned frame must
//! carry this space's stamp for this VA. Anything else is a use-after-free (`uaf_detected`).
//!
//! Sits on `aspace`, `mm_types` (the shared object's owner tag) and `unshare_sync`.

use crate::aspace::{self, AddressSpace, SpaceState, StampCheck, TABLE_POISON, entry};
use crate::mm_types::OBJECT_OWNER_BIT;
use crate::settings::{Bug, Bugs};
use broadside_arch::pte::{Descriptor, DescriptorKind, PAGE_SIZE, level_block_size, table_index};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::events;
use broadside_base::irq;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame::{self, FrameKind};
use core::sync::atomic::Ordering;

/// What one walk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkOutcome {
    /// A frame was pinned, verified and released.
    Pinned {
        /// The frame pinned.
        pa: PhysAddr,
        /// The level of the leaf that mapped it.
        level: u8,
    },
    /// No mapping (or the space is gone).
    NotPresent,
    /// An entry changed under the walk, or the frame was being freed: backed out.
    Retry,
    /// A use-after-free: what was seen.
    UseAfterFree(&'static str),
    /// The walk kept its pin on a page that was unmapped between its load of the entry and the
    /// pin: the re-check that rule 4 requires after the pin did not stop it.
    StalePin,
}

/// A table the walk passed through: where, which entry, what it held, and the table's identity.
#[derive(Clone, Copy)]
struct Step {
    table: PhysAddr,
    index: usize,
    value: u64,
    generation: u64,
}

/// What a table the walk is in turned out to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// A live table of this space (or a shared object's level-2 table) at the expected level.
    Ours,
    /// Freed, or freed and reused: never acceptable inside a walk ([rule 2](broadside_base::rules#rule-2)).
    Freed,
    /// A live table that belongs to another space now (a fully unshared table its last sharer
    /// took over).
    Foreign,
}

/// Classifies `table` for a walk of `space` at `level` that first saw it with `generation`.
fn identity(space: &AddressSpace, table: PhysAddr, level: u8, generation: u64) -> Identity {
    let m = frame::meta(table);
    let owner = m.owner.load(Ordering::Acquire);
    if m.kind() != FrameKind::Table as u32
        || owner == 0
        || (m.level_and_share.load(Ordering::Relaxed) & 0xff) as u8 != level
        || m.generation.load(Ordering::Relaxed) != generation
    {
        Identity::Freed
    } else if owner == space.id || (level == 2 && owner & OBJECT_OWNER_BIT != 0) {
        Identity::Ours
    } else {
        Identity::Foreign
    }
}

/// How the walk checks the entries it came through.
#[derive(Clone, Copy, Debug)]
pub struct WalkConfig {
    /// Mask IRQs for the walk (false only for `bug=walker-irqs-on`).
    pub mask_irqs: bool,
    /// Re-check the level-0 and level-1 entries too, not just the level-2 and level-3 ones
    /// GUP-fast re-checks (`unshare=recheck`).
    pub recheck_upper: bool,
    /// The run's planted bugs (the walker's own: a step of rule 4 left out).
    pub bugs: Bugs,
}

impl WalkConfig {
    /// The configuration the run's arguments ask for: IRQs masked unless `bug=walker-irqs-on`,
    /// upper levels re-checked with `unshare=recheck` (see
    /// [`unshare_sync::walker_rechecks_upper`]).
    ///
    /// [`unshare_sync::walker_rechecks_upper`]: crate::unshare_sync::walker_rechecks_upper
    pub fn for_run(bugs: Bugs) -> Self {
        Self {
            mask_irqs: !bugs.has(Bug::WalkerIrqsOn),
            recheck_upper: crate::unshare_sync::walker_rechecks_upper(),
            bugs,
        }
    }
}

/// Walks `space` at `va`, pins the frame, verifies it, and releases it. The walk holds its pin
/// and keeps re-reading the tables it came through for `hold` counter ticks before the final
/// re-check, as a walk over a long range would; that is the window in which a table freed too
/// early is seen. `mask_irqs = false` is the `bug=walker-irqs-on` negative control.
pub fn walk_and_pin(space: &AddressSpace, va: VirtAddr, cfg: WalkConfig, hold: u64) -> WalkOutcome {
    let saved = irq::save_and_mask();
    if !cfg.mask_irqs {
        // The planted bug walks with IRQs on, even where the caller had masked them (a walk
        // made on waking from idle): a tick inside the walk then reports a quiescent state.
        irq::unmask();
    }
    let this = broadside_base::percpu::this_cpu();
    this.in_walker.store(true, Ordering::Relaxed);
    stats::count(Counter::WalkerWalks);
    let outcome = walk_masked(space, va, cfg, hold);
    this.in_walker.store(false, Ordering::Relaxed);
    irq::restore(saved);
    match outcome {
        WalkOutcome::Pinned { .. } => stats::count(Counter::WalkerPins),
        WalkOutcome::NotPresent => stats::count(Counter::WalkerNotPresent),
        WalkOutcome::Retry => stats::count(Counter::WalkerRetries),
        WalkOutcome::UseAfterFree(_) => stats::detected(Counter::UafDetected),
        WalkOutcome::StalePin => stats::detected(Counter::StalePinDetected),
    }
    outcome
}

fn walk_masked(space: &AddressSpace, va: VirtAddr, cfg: WalkConfig, hold: u64) -> WalkOutcome {
    // A dead space's root is on its way to being freed; a space still Live or Dying keeps its
    // root until after it is marked Dead (see `AddressSpace::destroy`).
    if space.state() == SpaceState::Dead {
        return WalkOutcome::NotPresent;
    }
    let mut steps = [Step {
        table: PhysAddr::ZERO,
        index: 0,
        value: 0,
        generation: 0,
    }; 4];
    let mut table = space.root;
    let mut unmaps_at_load = 0;
    let mut generation_at_load = 0;
    for level in 0..=3u8 {
        let generation = frame::meta(table).generation.load(Ordering::Relaxed);
        match identity(space, table, level, generation) {
            Identity::Ours => {}
            Identity::Freed => {
                events::mark(events::Kind::Blame, table.as_u64(), level as u64);
                return WalkOutcome::UseAfterFree("walked into a freed table");
            }
            Identity::Foreign => {
                let out = foreign_table(&steps[..level as usize], cfg);
                if matches!(out, WalkOutcome::UseAfterFree(_)) {
                    events::mark(events::Kind::Blame, table.as_u64(), level as u64);
                }
                return out;
            }
        }
        let index = table_index(va.as_u64(), level);
        let value = entry(table, index).load(Ordering::Acquire);
        if let Some(pa) = Descriptor::from_raw(value).leaf_address(level) {
            // The leaf's unmap count as of this load, for the check across the pin.
            let meta = frame::meta(pa);
            unmaps_at_load = meta.unmaps.load(Ordering::Acquire);
            generation_at_load = meta.generation.load(Ordering::Acquire);
            // Deterministic runs: let other CPUs run between the load and the pin. A stall
            // here ends at one of the two steps rule 4's pin races (a seeded coin picks): the
            // page's unmap (the pin must then be undone by the re-check) or its release (the
            // pin must then fail: the count is zero).
            let released = broadside_base::hint::coin();
            let key = pa.as_u64();
            broadside_base::hint::yield_point_until(
                broadside_base::hint::Site::WalkerLoad,
                key,
                || {
                    if released {
                        meta.refcount.load(Ordering::Relaxed) == 0
                    } else {
                        meta.unmaps.load(Ordering::Relaxed) != unmaps_at_load
                    }
                },
            );
        } else {
            // Deterministic runs: let other CPUs run between the load and its use.
            broadside_base::hint::yield_point(broadside_base::hint::Site::WalkerLoad);
        }
        if value == TABLE_POISON {
            events::mark(events::Kind::Blame, table.as_u64(), level as u64);
            return WalkOutcome::UseAfterFree("read poison from a freed table");
        }
        steps[level as usize] = Step {
            table,
            index,
            value,
            generation,
        };
        match Descriptor::from_raw(value).kind(level) {
            DescriptorKind::Invalid => return WalkOutcome::NotPresent,
            DescriptorKind::Table { next } => table = next,
            DescriptorKind::Page { pa, .. } | DescriptorKind::Block { pa, .. } => {
                let steps = &steps[..=level as usize];
                let leaf = Leaf {
                    va,
                    head: pa,
                    level,
                    unmaps_at_load,
                    generation_at_load,
                };
                return pin_and_recheck(space, leaf, steps, cfg, hold);
            }
        }
    }
    WalkOutcome::NotPresent
}

/// The walk is in a live table that belongs to another space. With `recheck_upper`, an entry
/// above it that changed explains that (this space unshared it; back out); otherwise it is the
/// bug [rule 6](broadside_base::rules#rule-6) exists for: a walker inside a table that no longer belongs to its space.
fn foreign_table(above: &[Step], cfg: WalkConfig) -> WalkOutcome {
    let changed = above
        .iter()
        .any(|s| entry(s.table, s.index).load(Ordering::Acquire) != s.value);
    if cfg.recheck_upper && changed {
        WalkOutcome::Retry
    } else {
        WalkOutcome::UseAfterFree("walked a table that no longer belongs to its space")
    }
}

/// Re-reads the entries the walk came through: `Err` for a use-after-free, `Ok(false)` if an
/// entry changed (the walk must back out), `Ok(true)` if all still hold. Every table is checked
/// for identity; entry values are compared at levels 2 and 3 (as GUP-fast re-checks the PMD and
/// PTE), and at levels 0 and 1 too with `recheck_upper`.
fn recheck(space: &AddressSpace, steps: &[Step], cfg: WalkConfig) -> Result<bool, WalkOutcome> {
    // Freed tables first, deepest first: when a teardown frees every table of the walk, the
    // one blamed is the table whose unhook a replay can step back to (a root is freed, never
    // unhooked).
    for (l, s) in steps.iter().enumerate().rev() {
        let freed = entry(s.table, s.index).load(Ordering::Acquire) == TABLE_POISON
            || identity(space, s.table, l as u8, s.generation) == Identity::Freed;
        if freed {
            return Err(table_freed_under(s.table, l));
        }
    }
    for (l, s) in steps.iter().enumerate() {
        let now = entry(s.table, s.index).load(Ordering::Acquire);
        if now == TABLE_POISON {
            return Err(table_freed_under(s.table, l));
        }
        match identity(space, s.table, l as u8, s.generation) {
            Identity::Ours => {}
            Identity::Freed => {
                return Err(table_freed_under(s.table, l));
            }
            Identity::Foreign => {
                return match foreign_table(&steps[..l], cfg) {
                    WalkOutcome::Retry => Ok(false),
                    uaf => {
                        // Freed and reused while held: blamed like a table freed under it.
                        events::mark(events::Kind::Blame, s.table.as_u64(), l as u64);
                        Err(uaf)
                    }
                };
            }
        }
        if now != s.value && (l >= 2 || cfg.recheck_upper) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The walk's table at `level`, `table`, was freed while the walk held it. The event log names
/// it, so a replay can find the unhook that let it go (`bs-culprit`).
fn table_freed_under(table: PhysAddr, level: usize) -> WalkOutcome {
    events::mark(events::Kind::Blame, table.as_u64(), level as u64);
    WalkOutcome::UseAfterFree("a table the walk held was freed under it")
}

/// The leaf a walk reached: the VA walked, the frame (the head of a block) and level, and the
/// frame's unmap count and generation read right after the entry.
struct Leaf {
    va: VirtAddr,
    head: PhysAddr,
    level: u8,
    unmaps_at_load: u32,
    generation_at_load: u64,
}

fn pin_and_recheck(
    space: &AddressSpace,
    leaf: Leaf,
    steps: &[Step],
    cfg: WalkConfig,
    hold: u64,
) -> WalkOutcome {
    let Leaf {
        va, head, level, ..
    } = leaf;
    let meta = frame::meta(head);
    // Rule 4, step 1: pin only a frame whose count is not already zero (one being freed).
    let pinned = if cfg.bugs.has(Bug::WalkerPinDying) {
        meta.refcount.fetch_add(1, Ordering::Acquire);
        true
    } else {
        meta.try_get()
    };
    if !pinned {
        return WalkOutcome::Retry; // being freed
    }
    // Whether the page was unmapped between the load of its entry and the pin: then the
    // re-check below must see the entry changed (the count is bumped after the clear).
    // Only the incarnation the walk loaded: a frame freed, reused and mapped at this same VA
    // again has the same entry, and the pin of it is good (found once in 100 seeds, a false
    // alarm, before the generation was compared).
    let unmapped_before_pin = meta.unmaps.load(Ordering::Acquire) != leaf.unmaps_at_load
        && meta.generation.load(Ordering::Acquire) == leaf.generation_at_load
        && meta.kind() == FrameKind::Data as u32;
    events::mark(events::Kind::Pin, va.as_u64(), head.as_u64());
    // Deterministic runs: let other CPUs run between the pin and the re-checks.
    broadside_base::hint::yield_point(broadside_base::hint::Site::WalkerPin);
    // Rule 4, step 2: re-check every entry after the pin (`bug=walker-no-recheck` skips it).
    let recheck_on = !cfg.bugs.has(Bug::WalkerNoRecheck);
    // The long part of the walk: the tables must stay valid memory throughout, even once they
    // are unhooked (then the walk will back out at the end). The hold waits for time, not for
    // other CPUs: `yield_now`, which leaves an emulated store buffer as it is.
    let until = broadside_arch::aarch64::cpu::counter() + hold;
    while broadside_arch::aarch64::cpu::counter() < until {
        if recheck_on && let Err(uaf) = recheck(space, steps, cfg) {
            unpin(head);
            return uaf;
        }
        broadside_base::hint::pause();
    }
    // The final re-check (rule 4; see `broadside_base::rules`).
    let held = if recheck_on {
        recheck(space, steps, cfg)
    } else {
        Ok(true)
    };
    match held {
        Err(uaf) => {
            unpin(head);
            return uaf;
        }
        // Rule 4, step 3: an entry changed, back out (`bug=walker-no-backout` goes on).
        Ok(false) if !cfg.bugs.has(Bug::WalkerNoBackout) => {
            unpin(head);
            return WalkOutcome::Retry;
        }
        Ok(_) => {}
    }
    if unmapped_before_pin {
        // Rule 4's own check: a page unmapped before the pin is one the re-check must have
        // refused; the walk would hand out a page no longer mapped here.
        unpin(head);
        return WalkOutcome::StalePin;
    }
    // The pinned frame must be this space's page for this VA.
    let page = head + ((va - va.align_down(level_block_size(level))) & !(PAGE_SIZE - 1));
    let w = broadside_arch::aarch64::layout::phys_to_virt(page).as_ptr::<u64>();
    // SAFETY: the frame is pinned (refcount held), so it cannot be freed or reused while read.
    let (w0, w1) = unsafe { (w.read_volatile(), w.add(1).read_volatile()) };
    // A shared object's frame carries the object's tag, not a space's (it is aliased at many
    // VAs, and may be reached through a shared table or a space's private copy of one).
    let m = frame::meta(head);
    let object = (m.kind() == FrameKind::Shared as u32).then(|| m.owner.load(Ordering::Acquire));
    let check = aspace::check_stamp(w0, w1, space.id, va, object);
    unpin(head);
    match check {
        StampCheck::Ok => WalkOutcome::Pinned { pa: page, level },
        StampCheck::Poison => WalkOutcome::UseAfterFree("pinned a freed (poisoned) frame"),
        StampCheck::Wrong => WalkOutcome::UseAfterFree("pinned a frame that is not this page"),
    }
}

/// Drops the walker's pin; frees the frame if the unmap already dropped its own reference.
fn unpin(head: PhysAddr) {
    let order = frame::meta(head).level_and_share.load(Ordering::Relaxed) & 0xff;
    aspace::release_data_frame(head, order);
}
