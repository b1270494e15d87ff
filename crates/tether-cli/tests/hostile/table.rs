//! The outcome of each case and the table printed to the test output.

/// One hostile-input case: what the server must answer and what it did.
pub struct Outcome {
    pub group: &'static str,
    pub case: String,
    pub expected: String,
    pub actual: String,
    /// The close reason, response body or measurement, for the log.
    pub detail: String,
}

impl Outcome {
    pub fn new(
        group: &'static str,
        case: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        detail: impl Into<String>,
    ) -> Outcome {
        Outcome {
            group,
            case: case.into(),
            expected: expected.into(),
            actual: actual.into(),
            detail: detail.into(),
        }
    }

    pub fn passed(&self) -> bool {
        self.expected == self.actual
    }
}

/// The cases as a Markdown table (so it can be pasted into SECURITY.md as it is).
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| # | group | case | expected | actual | ok | detail |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (i, o) in outcomes.iter().enumerate() {
        let detail: String = o
            .detail
            .replace('|', "\\|")
            .replace('\n', " ")
            .chars()
            .take(90)
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            o.group,
            o.case.replace('|', "\\|"),
            o.expected,
            o.actual,
            if o.passed() { "yes" } else { "**NO**" },
            detail
        ));
    }
    out
}
