//! The result lines and the final count.

use vgpu_guest_test::protocol::DONE;

/// What a subtest found.
pub enum Outcome {
    /// It passed; the detail says what it saw.
    Pass(String),
    /// It failed; the detail says why.
    Fail(String),
    /// It could not run here; the detail says why.
    Skip(String),
}

/// Counts and prints results.
#[derive(Default)]
pub struct Report {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Report {
    /// Prints one result line.
    pub fn record(&mut self, name: &str, outcome: Outcome) {
        let (tag, detail) = match outcome {
            Outcome::Pass(d) => {
                self.passed += 1;
                ("PASS", d)
            }
            Outcome::Fail(d) => {
                self.failed += 1;
                ("FAIL", d)
            }
            Outcome::Skip(d) => {
                self.skipped += 1;
                ("SKIP", d)
            }
        };
        println!("{tag} {name}: {detail}");
    }

    /// Prints the final lines; the exit status.
    pub fn finish(&self) -> i32 {
        println!("{} passed, {} failed", self.passed, self.failed);
        println!(
            "{DONE} {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        i32::from(self.failed > 0)
    }
}
