//! The sanitizer against a reference model, on random sequences of loads, clears, barriers,
//! TLBIs (the planner's flushes, with and without the planted bugs), rollovers, full flushes
//! and checks on four CPUs and two spaces.
//!
//! The model keeps one entry per CPU per leaf (or walk-cache entry) that CPU may still hold,
//! and applies every rule entry by entry with the arch module's own accessors: no pieces, no
//! runs, no splitting, no frame counters, no indexes. Every check and every TTBR0 load must get
//! the same verdict from both; what either forgets on a report, the other forgets too.

use super::*;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use broadside_arch::pte::{L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SIZE, level_block_size};
use broadside_arch::tlbi::{
    FlushPlan, FlushRequest, TlbFeatures, TlbiOp, pages_covered, plan_range_flush,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

const CPUS: usize = 4;
const ROOTS: [u64; 2] = [0x4010_0000, 0x4020_0000];
const EMPTY_ROOT: u64 = 0x1000;
const FRAME: u64 = 0x8000_0000;
const FRAMES: u64 = 8;
const OPS: u64 = 3;

fn frame(k: u64) -> u64 {
    FRAME + k * L2_BLOCK_SIZE
}

// ---- the model -----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Entry {
    cpu: usize,
    tag: Tag,
    start: u64,
    end: u64,
    level: u8,
    walk: bool,
    frame: u64,
    op: OpId,
    root: u64,
    recorder: usize,
    published_all: Option<u64>,
    published_local: Option<u64>,
    deferred: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Loaded {
    root: u64,
    asid: u16,
    space: u64,
}

#[derive(Clone, Debug, Default)]
struct Ctx {
    loaded: Loaded,
    loads: u64,
    owes: bool,
    kept: Option<u16>,
    recent: BTreeMap<u16, u64>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    cpu: usize,
    inv: Invalidation,
    /// The first op's: a run keeps it, so a clear made visible inside the run is credited to
    /// none of it (as the sanitizer does).
    seq: u64,
    loaded: Loaded,
    loads: u64,
    /// By-VA ops to consecutive pages issued in a row with no barrier between (a range flush
    /// without FEAT_TLBIRANGE) are one run of this many pages from `inv`'s; 1 for any other op.
    pages: u64,
}

/// The page a by-VA op names (not a range op, whose pages are `pages_covered`'s too).
fn by_va_page(op: TlbiOp) -> Option<u64> {
    match op {
        TlbiOp::Vae1 { .. }
        | TlbiOp::Vale1 { .. }
        | TlbiOp::Vaae1 { .. }
        | TlbiOp::Vaale1 { .. } => pages_covered(op).map(|pages| pages.start),
        _ => None,
    }
}

#[derive(Default)]
struct Model {
    seq: u64,
    entries: Vec<Entry>,
    pending: Vec<Pending>,
    ctx: [Ctx; CPUS],
    /// (space index, cpu) -> the ASIDs it loaded the space under since its last full flush.
    holders: BTreeMap<(usize, usize), BTreeSet<u16>>,
    /// Each CPU's latest barrier (any kind): a run of by-VA ops does not reach across one.
    last_barrier: [u64; CPUS],
}

/// What a TTBR0 load or a check found, as far as the comparison goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    Gap,
    RolloverSkipped,
    AsidReused,
}

fn verdict(v: Option<&Violation>) -> Verdict {
    match v {
        None => Verdict::Fine,
        Some(Violation::FlushGap { .. }) => Verdict::Gap,
        Some(Violation::RolloverFlushSkipped { .. }) => Verdict::RolloverSkipped,
        Some(Violation::AsidReused { .. }) => Verdict::AsidReused,
        Some(Violation::BreakBeforeMake { .. }) => unreachable!("no changes in the model"),
    }
}

/// Whether `p` (an op, or a run of by-VA ops) invalidates `e`.
fn pending_hits(p: &Pending, e: &Entry) -> bool {
    if p.pages == 1 {
        return model_hits(&p.inv, e);
    }
    let first = by_va_page(p.inv.op).expect("only by-VA ops make runs");
    // The tags and kinds as for the run's first op (on its own page), the pages widened.
    let kinds_ok = model_hits(
        &p.inv,
        &Entry {
            start: first << 12,
            end: (first + 1) << 12,
            ..*e
        },
    );
    kinds_ok && first < e.end >> 12 && e.start >> 12 < first + p.pages
}

fn model_hits(inv: &Invalidation, e: &Entry) -> bool {
    let tag_ok = rules::asid_matches(inv, e.tag);
    let kind_ok = if e.walk {
        !inv.leaf_only && inv.ttl.is_none()
    } else {
        inv.ttl.is_none_or(|level| level == e.level)
    };
    let va_ok = match pages_covered(inv.op) {
        None => true,
        Some(pages) => pages.start < e.end >> 12 && e.start >> 12 < pages.end,
    };
    tag_ok && kind_ok && va_ok
}

impl Model {
    fn load(&mut self, cpu: usize, space: Option<usize>, asid: u16) -> Verdict {
        let (root, id) = match space {
            Some(i) => (ROOTS[i], i as u64 + 1),
            None => (EMPTY_ROOT, 0),
        };
        let c = &mut self.ctx[cpu];
        let mut v = Verdict::Fine;
        if asid != 0 {
            if c.owes && c.kept != Some(asid) {
                v = Verdict::RolloverSkipped;
                c.owes = false;
            }
            if id != 0 {
                if let Some(&prev) = c.recent.get(&asid)
                    && prev != 0
                    && prev != id
                    && v == Verdict::Fine
                {
                    v = Verdict::AsidReused;
                }
                c.recent.insert(asid, id);
            }
        }
        c.loaded = Loaded {
            root,
            asid,
            space: id,
        };
        c.loads += 1;
        if let Some(i) = space
            && asid != 0
        {
            self.holders.entry((i, cpu)).or_default().insert(asid);
        }
        if v == Verdict::Fine && asid != 0 {
            let before = self.entries.len();
            self.entries.retain(|e| {
                let held = e.tag == Tag::Asid(asid) || e.tag == Tag::AnyAsid;
                !(e.cpu == cpu && e.deferred && held)
            });
            if self.entries.len() != before {
                v = Verdict::Gap;
            }
        }
        v
    }

    fn rollover(&mut self, kept: [Option<u16>; CPUS]) {
        for (c, k) in self.ctx.iter_mut().zip(kept) {
            c.owes = true;
            c.kept = k;
        }
    }

    /// The CPUs holding space `i`, grouped by ASID.
    fn groups(&self, i: usize) -> BTreeMap<u16, Vec<usize>> {
        let mut g: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (&(s, cpu), asids) in &self.holders {
            if s == i {
                for &a in asids {
                    g.entry(a).or_default().push(cpu);
                }
            }
        }
        g
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        cpu: usize,
        tag: Tag,
        start: u64,
        size: u64,
        level: u8,
        walk: bool,
        frame: u64,
        op: OpId,
        root: u64,
        recorder: usize,
    ) {
        self.entries.push(Entry {
            cpu,
            tag,
            start,
            end: start + size,
            level,
            walk,
            frame,
            op,
            root,
            recorder,
            published_all: None,
            published_local: None,
            deferred: false,
        });
    }

    fn clear_run(&mut self, recorder: usize, run: &ClearRun) {
        let size = level_block_size(run.level);
        let start = run.va & !(size - 1);
        let root = ROOTS[run.space];
        let groups = self.groups(run.space);
        let mut cpus_tags: Vec<(usize, Tag)> = Vec::new();
        if run.global {
            let all: BTreeSet<usize> = groups.values().flatten().copied().collect();
            cpus_tags.extend(all.into_iter().map(|c| (c, Tag::Global)));
        } else {
            for (a, cpus) in &groups {
                cpus_tags.extend(cpus.iter().map(|&c| (c, Tag::Asid(*a))));
            }
        }
        for (cpu, tag) in cpus_tags {
            for (k, &f) in run.frames.iter().enumerate() {
                let va = start + k as u64 * size;
                self.add(
                    cpu,
                    tag,
                    va,
                    size,
                    run.level,
                    false,
                    frame(f),
                    run.op,
                    root,
                    recorder,
                );
            }
        }
    }

    fn clear_table(&mut self, recorder: usize, t: &ClearTable) {
        let span = level_block_size(t.level - 1);
        let start = t.va & !(span - 1);
        let root = ROOTS[t.space];
        for (a, cpus) in self.groups(t.space) {
            for cpu in cpus {
                let tag = Tag::Asid(a);
                let f = frame(t.table);
                self.add(
                    cpu,
                    tag,
                    start,
                    span,
                    t.level - 1,
                    true,
                    f,
                    t.op,
                    root,
                    recorder,
                );
                if t.leaves {
                    let size = level_block_size(t.level);
                    for k in 0..span / size {
                        let va = start + k * size;
                        self.add(cpu, tag, va, size, t.level, false, f, t.op, root, recorder);
                    }
                }
            }
        }
    }

    fn issue(&mut self, cpu: usize, inv: Invalidation) {
        self.seq += 1;
        let c = &self.ctx[cpu];
        let since_barrier = self.last_barrier[cpu];
        if let Some(page) = by_va_page(inv.op)
            && let Some(last) = self.pending.iter_mut().rev().find(|p| p.cpu == cpu)
            && last.seq > since_barrier
            && last.loaded == c.loaded
            && last.loads == c.loads
            && core::mem::discriminant(&last.inv.op) == core::mem::discriminant(&inv.op)
            && (
                last.inv.asid,
                last.inv.leaf_only,
                last.inv.ttl,
                last.inv.scope,
            ) == (inv.asid, inv.leaf_only, inv.ttl, inv.scope)
            && by_va_page(last.inv.op).map(|first| first + last.pages) == Some(page)
        {
            last.pages += 1;
            return;
        }
        self.pending.push(Pending {
            cpu,
            inv,
            seq: self.seq,
            loaded: c.loaded,
            loads: c.loads,
            pages: 1,
        });
        // The sanitizer keeps at most 64 pending per CPU, forgetting the oldest.
        let mine: Vec<usize> = (0..self.pending.len())
            .filter(|&i| self.pending[i].cpu == cpu)
            .collect();
        if mine.len() > MODEL_PENDING {
            self.pending.remove(mine[0]);
        }
    }

    fn barrier(&mut self, cpu: usize, b: Barrier) {
        self.seq += 1;
        let seq = self.seq;
        self.last_barrier[cpu] = seq;
        let all = matches!(b, Barrier::StoreIs | Barrier::FullIs);
        for e in self.entries.iter_mut().filter(|e| e.recorder == cpu) {
            e.published_local.get_or_insert(seq);
            if all {
                e.published_all.get_or_insert(seq);
            }
        }
        let completes = |p: &Pending| {
            p.cpu == cpu
                && match b {
                    Barrier::FullIs => true,
                    Barrier::FullLocal => matches!(p.inv.scope, Scope::Local(_)),
                    _ => false,
                }
        };
        let mut i = 0;
        while i < self.pending.len() {
            if completes(&self.pending[i]) {
                let p = self.pending.remove(i);
                self.apply(p);
            } else {
                i += 1;
            }
        }
    }

    fn apply(&mut self, p: Pending) {
        let reached = |cpu: usize| match p.inv.scope {
            Scope::InnerShareable => true,
            Scope::Local(c) => c == cpu,
        };
        if p.inv.target == Target::All {
            for cpu in (0..CPUS).filter(|&c| reached(c)) {
                self.full_flush_effects(cpu);
            }
        }
        let steady = (self.ctx[p.cpu].loads == p.loads).then_some(p.loaded);
        let issuer = p.cpu;
        self.entries.retain(|e| {
            let ordered = e.published_all.is_some_and(|s| s < p.seq)
                || (e.cpu == issuer
                    && e.recorder == issuer
                    && e.published_local.is_some_and(|s| s < p.seq))
                || (e.cpu == issuer && steady.is_some_and(|l| e.root != 0 && l.root != e.root));
            !(reached(e.cpu) && ordered && pending_hits(&p, e))
        });
    }

    fn full_flush_effects(&mut self, cpu: usize) {
        let c = &mut self.ctx[cpu];
        c.owes = false;
        c.kept = None;
        c.recent.clear();
        if c.loaded.asid != 0 {
            c.recent.insert(c.loaded.asid, c.loaded.space);
        }
        let loaded = c.loaded;
        self.holders
            .retain(|&(s, c), _| c != cpu || (loaded.asid != 0 && ROOTS[s] == loaded.root));
    }

    fn usable(&self, e: &Entry) -> bool {
        let c = &self.ctx[e.cpu];
        match e.tag {
            Tag::Global => true,
            Tag::Asid(a) => !c.owes || c.loaded.asid == a,
            Tag::AnyAsid => !c.owes || (c.loaded.asid != 0 && c.loaded.root == e.root),
        }
    }

    fn check(&mut self, cpu: usize, check: Check) -> Verdict {
        let named = |e: &Entry| match check {
            Check::Free(f) | Check::Reuse(f) => e.frame == f,
            Check::Return(op) => e.op == op && e.recorder == cpu,
            // The model's random sequences make no range checks (the unit tests do).
            Check::Range { .. } | Check::Load { .. } => false,
        };
        let usable: Vec<bool> = self.entries.iter().map(|e| self.usable(e)).collect();
        let mut gap = false;
        let mut keep = usable.iter();
        let entries = core::mem::take(&mut self.entries);
        for mut e in entries {
            let usable = *keep.next().unwrap();
            if named(&e) {
                if usable {
                    gap = true;
                    continue;
                }
                e.deferred = true;
            }
            self.entries.push(e);
        }
        if gap { Verdict::Gap } else { Verdict::Fine }
    }
}

// ---- random sequences -----------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ClearRun {
    space: usize,
    op: OpId,
    va: u64,
    level: u8,
    global: bool,
    frames: Vec<u64>,
}

#[derive(Clone, Copy, Debug)]
struct ClearTable {
    space: usize,
    op: OpId,
    va: u64,
    level: u8,
    table: u64,
    leaves: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    SkipTlbi,
    LocalTlbi,
    LeafOnly,
    WrongAsid,
    NoDsb,
    NarrowRange,
    BeforeBarrier,
}

#[derive(Clone, Debug)]
enum Act {
    Load {
        cpu: usize,
        space: Option<usize>,
        asid: u16,
    },
    Run {
        cpu: usize,
        run: ClearRun,
    },
    /// A run that continues the last one (same op, space and level, the next leaves).
    RunNext {
        cpu: usize,
        frames: Vec<u64>,
    },
    /// A non-leaf flush of `pages` pages from a page of the test's GiB, on `cpu` under `asid`
    /// (a flush that covers part of what was cleared).
    FlushRange {
        cpu: usize,
        page: u64,
        pages: u64,
        asid: u16,
        local: bool,
    },
    Table {
        cpu: usize,
        table: ClearTable,
    },
    /// The flush of the space's `which`-th clear so far, on `cpu`, under `asid`.
    Flush {
        which: usize,
        cpu: usize,
        asid: u16,
        feats: TlbFeatures,
        local: bool,
        bug: Bug,
    },
    /// A local TLBI of the `which`-th clear's range on `cpu` (the IPI baseline's target).
    LocalOp {
        which: usize,
        cpu: usize,
        asid: u16,
    },
    Barrier {
        cpu: usize,
        barrier: Barrier,
    },
    FullFlush {
        cpu: usize,
    },
    Rollover {
        keep: [bool; CPUS],
    },
    Check {
        cpu: usize,
        check: Check,
    },
}

fn any_run() -> impl Strategy<Value = ClearRun> {
    (
        0usize..2,
        0..OPS,
        0u64..4,
        0u64..4,
        prop::bool::ANY,
        2u8..=3,
        prop::collection::vec(0..FRAMES, 1..7),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(space, op, block, page, _, level, frames, global)| ClearRun {
                space,
                op: OpId(op),
                va: L1_BLOCK_SIZE + block * L2_BLOCK_SIZE + page * PAGE_SIZE,
                level,
                global,
                frames,
            },
        )
}

fn any_table() -> impl Strategy<Value = ClearTable> {
    (
        0usize..2,
        0..OPS,
        0u64..4,
        2u8..=3,
        0..FRAMES,
        prop::bool::ANY,
    )
        .prop_map(|(space, op, block, level, table, leaves)| ClearTable {
            space,
            op: OpId(op),
            va: L1_BLOCK_SIZE + block * L2_BLOCK_SIZE,
            level,
            table,
            // A level-3 table holds pages, a level-2 one blocks.
            leaves,
        })
}

fn any_bug() -> impl Strategy<Value = Bug> {
    prop_oneof![
        10 => Just(Bug::None),
        1 => Just(Bug::SkipTlbi),
        1 => Just(Bug::LocalTlbi),
        1 => Just(Bug::LeafOnly),
        1 => Just(Bug::WrongAsid),
        1 => Just(Bug::NoDsb),
        1 => Just(Bug::NarrowRange),
        1 => Just(Bug::BeforeBarrier),
    ]
}

fn any_feats() -> impl Strategy<Value = TlbFeatures> {
    (any::<bool>(), any::<bool>()).prop_map(|(range, ttl)| TlbFeatures { range, ttl })
}

fn any_act() -> impl Strategy<Value = Act> {
    let cpu = 0usize..CPUS;
    let asid = 1u16..4;
    prop_oneof![
        5 => (cpu.clone(), prop::option::weighted(0.8, 0usize..2), asid.clone())
            .prop_map(|(cpu, space, asid)| Act::Load {
                cpu,
                space,
                asid: if space.is_some() { asid } else { 0 }
            }),
        4 => (cpu.clone(), any_run()).prop_map(|(cpu, run)| Act::Run { cpu, run }),
        3 => (cpu.clone(), prop::collection::vec(0..FRAMES, 1..5))
            .prop_map(|(cpu, frames)| Act::RunNext { cpu, frames }),
        // Mostly a few pages where the runs lie (blocks 0..4, their first pages), so that runs
        // are discharged in part; sometimes a wide range.
        3 => (cpu.clone(), 0u64..4, 0u64..10, 1u64..8, asid.clone(), any::<bool>())
            .prop_map(|(cpu, block, page, pages, asid, local)| Act::FlushRange {
                cpu, page: block * 512 + page, pages, asid, local
            }),
        1 => (cpu.clone(), 0u64..2048, 1u64..600, asid.clone(), any::<bool>())
            .prop_map(|(cpu, page, pages, asid, local)| Act::FlushRange {
                cpu, page, pages, asid, local
            }),
        2 => (cpu.clone(), any_table()).prop_map(|(cpu, table)| Act::Table { cpu, table }),
        5 => (any::<usize>(), cpu.clone(), asid.clone(), any_feats(), any::<bool>(), any_bug())
            .prop_map(|(which, cpu, asid, feats, local, bug)| Act::Flush {
                which, cpu, asid, feats, local, bug
            }),
        1 => (any::<usize>(), cpu.clone(), asid.clone())
            .prop_map(|(which, cpu, asid)| Act::LocalOp { which, cpu, asid }),
        1 => (cpu.clone(), prop_oneof![
                Just(Barrier::StoreIs), Just(Barrier::StoreLocal),
                Just(Barrier::FullIs), Just(Barrier::FullLocal)])
            .prop_map(|(cpu, barrier)| Act::Barrier { cpu, barrier }),
        1 => cpu.clone().prop_map(|cpu| Act::FullFlush { cpu }),
        1 => any::<[bool; CPUS]>().prop_map(|keep| Act::Rollover { keep }),
        5 => (cpu.clone(), 0..FRAMES).prop_map(|(cpu, f)| Act::Check {
                cpu, check: Check::Free(frame(f)) }),
        1 => (cpu, 0..OPS).prop_map(|(cpu, op)| Act::Check {
                cpu, check: Check::Return(OpId(op)) }),
    ]
}

/// What the page-table code would ask the flush for after a clear of `[start, end)` at
/// `level` (`walk`: a table went away), under `asid`, mutated by `bug`.
fn request(
    start: u64,
    end: u64,
    stride: u64,
    level: u8,
    walk: bool,
    asid: u16,
    bug: Bug,
) -> FlushRequest {
    let mut req = FlushRequest {
        start,
        end,
        stride,
        asid,
        last_level_only: !walk,
        level_hint: (!walk).then_some(level),
    };
    match bug {
        Bug::LeafOnly => {
            req.last_level_only = true;
            req.level_hint = Some(level);
        }
        Bug::WrongAsid => req.asid ^= 3,
        Bug::NarrowRange => req.end = (req.end - PAGE_SIZE).max(req.start),
        Bug::SkipTlbi => req.end = req.start,
        Bug::None | Bug::LocalTlbi | Bug::NoDsb | Bug::BeforeBarrier => {}
    }
    req
}

/// The range a recorded clear's flush asks for: (start, end, stride, level, walk).
#[derive(Clone, Copy, Debug)]
struct Made {
    start: u64,
    end: u64,
    stride: u64,
    level: u8,
    walk: bool,
}

/// What a run exercised.
#[derive(Default, Debug)]
struct Tally {
    fine: usize,
    gaps: usize,
    rollovers: usize,
    reuses: usize,
}

impl Tally {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Fine => self.fine += 1,
            Verdict::Gap => self.gaps += 1,
            Verdict::RolloverSkipped => self.rollovers += 1,
            Verdict::AsidReused => self.reuses += 1,
        }
    }
}

fn run(acts: &[Act]) -> Result<Tally, TestCaseError> {
    let san = Sanitizer::for_cpus(CPUS);
    let slots: Vec<SpaceSlot> = (0..2)
        .map(|i| san.register_space(i as u64 + 1, ROOTS[i]).unwrap())
        .collect();
    let mut model = Model::default();
    let mut made: Vec<Made> = Vec::new();
    let mut last_run: Option<(usize, ClearRun)> = None;
    let mut tally = Tally::default();
    let record_run = |san: &Sanitizer, model: &mut Model, cpu: usize, run: &ClearRun| {
        let frames: Vec<u64> = run.frames.iter().map(|&k| frame(k)).collect();
        san.record_run(
            cpu,
            &LeafRun {
                op: run.op,
                space: run.space as u64 + 1,
                owed: Owed::Observed(slots[run.space]),
                va: run.va,
                level: run.level,
                global: run.global,
                frames: &frames,
            },
        );
        model.clear_run(cpu, run);
    };
    for act in acts {
        match act {
            Act::RunNext { cpu, frames } => {
                let Some((_, prev)) = last_run.clone() else {
                    continue;
                };
                let size = level_block_size(prev.level);
                let run = ClearRun {
                    va: (prev.va & !(size - 1)) + prev.frames.len() as u64 * size,
                    frames: frames.clone(),
                    ..prev
                };
                record_run(&san, &mut model, *cpu, &run);
                made.push(Made {
                    start: run.va,
                    end: run.va + frames.len() as u64 * size,
                    stride: size,
                    level: run.level,
                    walk: false,
                });
                last_run = Some((*cpu, run));
            }
            Act::FlushRange {
                cpu,
                page,
                pages,
                asid,
                local,
            } => {
                let start = L1_BLOCK_SIZE + page * PAGE_SIZE;
                let req = FlushRequest {
                    start,
                    end: start + pages * PAGE_SIZE,
                    stride: PAGE_SIZE,
                    asid: *asid,
                    last_level_only: false,
                    level_hint: None,
                };
                let (scope, store, full) = if *local {
                    (Scope::Local(*cpu), Barrier::StoreLocal, Barrier::FullLocal)
                } else {
                    (Scope::InnerShareable, Barrier::StoreIs, Barrier::FullIs)
                };
                san.barrier(*cpu, store);
                model.barrier(*cpu, store);
                for op in plan_range_flush(
                    &req,
                    TlbFeatures {
                        range: true,
                        ttl: false,
                    },
                )
                .ops()
                {
                    let inv = decode(op, scope);
                    san.issue(*cpu, inv);
                    model.issue(*cpu, inv);
                }
                san.barrier(*cpu, full);
                model.barrier(*cpu, full);
            }
            Act::Load { cpu, space, asid } => {
                let root = space.map_or(EMPTY_ROOT, |i| ROOTS[i]);
                let got = verdict(san.load_ttbr0(*cpu, root, *asid).as_deref());
                let want = model.load(*cpu, *space, *asid);
                prop_assert_eq!(got, want, "{:?}", act);
                tally.add(got);
            }
            Act::Run { cpu, run } => {
                record_run(&san, &mut model, *cpu, run);
                last_run = Some((*cpu, run.clone()));
                let size = level_block_size(run.level);
                let start = run.va & !(size - 1);
                made.push(Made {
                    start,
                    end: start + run.frames.len() as u64 * size,
                    stride: size,
                    level: run.level,
                    walk: false,
                });
            }
            Act::Table { cpu, table } => {
                san.record(
                    *cpu,
                    &Clear {
                        op: table.op,
                        space: table.space as u64 + 1,
                        owed: Owed::Observed(slots[table.space]),
                        entry: Cleared::Table {
                            va: table.va,
                            level: table.level,
                            table: frame(table.table),
                            holds: if table.leaves {
                                Holds::Leaves
                            } else {
                                Holds::Nothing
                            },
                        },
                    },
                );
                model.clear_table(*cpu, table);
                let span = level_block_size(table.level - 1);
                let start = table.va & !(span - 1);
                let (end, stride) = if table.leaves {
                    (start + span, level_block_size(table.level))
                } else {
                    (start + PAGE_SIZE, PAGE_SIZE)
                };
                made.push(Made {
                    start,
                    end,
                    stride,
                    level: table.level,
                    walk: true,
                });
            }
            Act::Flush {
                which,
                cpu,
                asid,
                feats,
                local,
                bug,
            } if !made.is_empty() => {
                let m = made[which % made.len()];
                let req = request(m.start, m.end, m.stride, m.level, m.walk, *asid, *bug);
                let plan: FlushPlan = plan_range_flush(&req, *feats);
                let local = *local || *bug == Bug::LocalTlbi;
                let (scope, store, full) = if local {
                    (Scope::Local(*cpu), Barrier::StoreLocal, Barrier::FullLocal)
                } else {
                    (Scope::InnerShareable, Barrier::StoreIs, Barrier::FullIs)
                };
                if *bug != Bug::BeforeBarrier {
                    san.barrier(*cpu, store);
                    model.barrier(*cpu, store);
                }
                for op in plan.ops() {
                    let inv = decode(op, scope);
                    san.issue(*cpu, inv);
                    model.issue(*cpu, inv);
                }
                if *bug == Bug::BeforeBarrier {
                    san.barrier(*cpu, store);
                    model.barrier(*cpu, store);
                }
                if *bug != Bug::NoDsb {
                    san.barrier(*cpu, full);
                    model.barrier(*cpu, full);
                }
            }
            Act::LocalOp { which, cpu, asid } if !made.is_empty() => {
                let m = made[which % made.len()];
                let req = request(m.start, m.end, m.stride, m.level, m.walk, *asid, Bug::None);
                for op in plan_range_flush(&req, TlbFeatures::default()).ops() {
                    let inv = decode(op, Scope::Local(*cpu));
                    san.issue(*cpu, inv);
                    model.issue(*cpu, inv);
                }
                san.barrier(*cpu, Barrier::FullLocal);
                model.barrier(*cpu, Barrier::FullLocal);
            }
            Act::Flush { .. } | Act::LocalOp { .. } => {}
            Act::Barrier { cpu, barrier } => {
                san.barrier(*cpu, *barrier);
                model.barrier(*cpu, *barrier);
            }
            Act::FullFlush { cpu } => {
                let inv = decode(TlbiOp::Vmalle1, Scope::Local(*cpu));
                for (b, op) in [
                    (Some(Barrier::StoreLocal), None),
                    (None, Some(inv)),
                    (Some(Barrier::FullLocal), None),
                ] {
                    if let Some(b) = b {
                        san.barrier(*cpu, b);
                        model.barrier(*cpu, b);
                    }
                    if let Some(inv) = op {
                        san.issue(*cpu, inv);
                        model.issue(*cpu, inv);
                    }
                }
            }
            Act::Rollover { keep } => {
                // A CPU keeps the ASID it runs (or last ran), or none.
                let kept: [Option<u16>; CPUS] = core::array::from_fn(|c| {
                    let a = model.ctx[c].loaded.asid;
                    (keep[c] && a != 0).then_some(a)
                });
                san.rollover(&|c| kept[c]);
                model.rollover(kept);
            }
            Act::Check { cpu, check } => {
                let got = verdict(san.check(*cpu, *check).err().as_deref());
                let want = model.check(*cpu, *check);
                prop_assert_eq!(got, want, "{:?}", act);
                tally.add(got);
            }
        }
    }
    // In the end, every frame and operation agrees too, and so do the open counts.
    for f in 0..FRAMES {
        for cpu in 0..CPUS {
            let got = verdict(san.check(cpu, Check::Free(frame(f))).err().as_deref());
            prop_assert_eq!(got, model.check(cpu, Check::Free(frame(f))));
        }
    }
    prop_assert_eq!(san.open_count() == 0, model.entries.is_empty());
    Ok(tally)
}

fn any_sequence() -> impl Strategy<Value = Vec<Act>> {
    prop::collection::vec(any_act(), 1..48)
}

/// Cases of the model property.
const MODEL_CASES: u32 = 2048;

/// TLBIs the model keeps pending per CPU (the sanitizer's limit for ops it cannot merge).
const MODEL_PENDING: usize = 64;

proptest! {
    // A fixed seed: the same sequences on every run, so that CI is deterministic; change it
    // here to search further. The model keeps a by-VA loop (up to 511 ops before one DSB) as
    // one run, as the sanitizer does; before it did, a random search found the model, not the
    // sanitizer, wrong there (the model had kept a 511-op loop's last 64 ops).
    #![proptest_config(ProptestConfig {
        cases: MODEL_CASES,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6272_6f61_6473_6964),
        ..ProptestConfig::default()
    })]

    /// Random loads, clears, flushes (the planner's, sometimes with a planted bug), local ops,
    /// barriers, full flushes, rollovers and checks: the sanitizer's verdict on every check and
    /// every load is the model's.
    #[test]
    fn sanitizer_agrees_with_the_model(acts in any_sequence()) {
        run(&acts)?;
    }
}

/// The property above is not vacuous: over a fixed sample, every verdict occurs.
#[test]
fn the_model_property_sees_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let strategy = any_sequence();
    let mut total = Tally::default();
    for _ in 0..400 {
        let acts = strategy.new_tree(&mut runner).unwrap().current();
        let t = run(&acts).unwrap();
        total.fine += t.fine;
        total.gaps += t.gaps;
        total.rollovers += t.rollovers;
        total.reuses += t.reuses;
    }
    assert!(
        total.fine > 200 && total.gaps > 20 && total.rollovers > 5 && total.reuses > 5,
        "{total:?}"
    );
}
