//! The exit codes of the design's contract, as the host sees them through semihosting.

/// How a run ends. The numbers are the contract (users' scripts test them): keep them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The run passed.
    Pass = 0,
    /// A check failed: a detector fired or a self-test failed.
    CheckFailed = 1,
    /// Bad arguments or configuration (the line before the summary says which).
    BadConfig = 2,
    /// A panic or an unexpected exception (the report says where).
    Panic = 3,
    /// The watchdog: the run did not finish in time, or a CPU stopped making progress.
    Watchdog = 4,
}

impl ExitCode {
    /// The number the host sees.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// Whether the run passed.
    pub const fn passed(self) -> bool {
        matches!(self, Self::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbers_are_the_contract() {
        assert_eq!(
            [
                ExitCode::Pass,
                ExitCode::CheckFailed,
                ExitCode::BadConfig,
                ExitCode::Panic,
                ExitCode::Watchdog
            ]
            .map(ExitCode::code),
            [0, 1, 2, 3, 4]
        );
        assert!(ExitCode::Pass.passed() && !ExitCode::CheckFailed.passed());
    }
}
