//! The synchronisation layer's kernel arguments: the bugs it plants (`bug=`; see
//! [`crate::planted`], where each is read). A new sync setting is a field and a row here.

use broadside_base::arg_enum;
use broadside_base::args::{ArgGroup, Flags, Key};

arg_enum! {
    /// A fence the synchronisation layer leaves out on request (`bug=`), for negative controls:
    /// only the weak-memory emulation (`weak=on`) makes each visible under QEMU.
    pub enum Bug {
        /// A CPU leaving idle is not ordered before its first reads (no fence in RCU's
        /// `idle_exit`): a grace period's snapshot may see it idle while it already reads what is
        /// being unpublished (caught with `weak=on`).
        RcuSnapshotEarly = "rcu-snapshot-early",
        /// The activation gate's entrant has no fence between its increment and its read of
        /// `closed`: the destroyer may read the gate drained while it gets in (caught with
        /// `weak=on`).
        GateNoFence = "gate-no-fence",
    }
}

/// The synchronisation layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncArgs {
    /// The sync bugs of `bug=` [none].
    pub bugs: Flags<Bug>,
}

impl ArgGroup for SyncArgs {
    const DEFAULT: SyncArgs = SyncArgs { bugs: Flags::NONE };
    const KEYS: &'static [Key<SyncArgs>] = &[];
    const BUGS: &'static [&'static str] = Bug::NAMES;

    fn plant(&mut self, index: usize) -> bool {
        self.bugs.insert_index(index)
    }

    fn planted(&self, index: usize) -> bool {
        self.bugs.has_index(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadside_base::args::{One, Planted, parse};

    #[test]
    fn bugs_parse_and_display_in_declaration_order() {
        let set = parse::<One<SyncArgs>>("bug=gate-no-fence,rcu-snapshot-early").unwrap();
        assert_eq!(
            set.0.bugs.iter().collect::<Vec<_>>(),
            [Bug::RcuSnapshotEarly, Bug::GateNoFence]
        );
        assert_eq!(
            Planted(&set).to_string(),
            "rcu-snapshot-early,gate-no-fence"
        );
        assert_eq!(
            parse::<One<SyncArgs>>("bug=gate").unwrap_err().to_string(),
            "bootargs: bug=gate: a comma-separated list of distinct names from \
             rcu-snapshot-early, gate-no-fence"
        );
        assert_eq!(parse::<One<SyncArgs>>("").unwrap().0, SyncArgs::DEFAULT);
    }
}
