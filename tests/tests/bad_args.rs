//! Bad arguments: one line naming the key and what is accepted, then exit 2 (the contract).

use broadside_tests::Boot;

/// Boots with `args`, expects exit 2, an error line matching `line` and a summary that says so.
fn rejected(name: &str, opts: &str, args: &str, what: &str, line: &str) {
    Boot::new(name)
        .opts(opts)
        .args(args)
        .expect_exit(2)
        .line(what, line)
        .check("the summary says fail, exit 2", |s| {
            !s.passed() && s.exit_code == 2
        });
}

#[test]
fn unknown_key() {
    rejected(
        "bad key",
        "",
        "bogus=1",
        "names the key",
        r"^error: bootargs: bogus=1: unknown key",
    );
}

#[test]
fn bad_value() {
    rejected(
        "bad value",
        "",
        "seconds=abc",
        "names the key",
        r"^error: bootargs: seconds=abc: ",
    );
}

#[test]
fn out_of_range() {
    rejected(
        "out of range",
        "",
        "hz=5",
        "names the key",
        r"^error: bootargs: hz=5: ",
    );
}

#[test]
fn asid_bits_too_small_for_the_cpus() {
    rejected(
        "asid_bits too small for the CPUs",
        "--smp 4",
        "asid_bits=2",
        "says why",
        r"^error: bootargs: asid_bits=2: ",
    );
}

#[test]
fn bad_errata() {
    for value in ["bogus", "repeat-tlbi,repeat-tlbi", "none,repeat-tlbi"] {
        rejected(
            &format!("bad errata={value}"),
            "",
            &format!("errata={value}"),
            "names the key and every accepted value",
            &format!(
                r"^error: bootargs: errata={value}: auto, none, or a comma-separated list of distinct names from repeat-tlbi, dvmsync-ipi$"
            ),
        );
    }
}
