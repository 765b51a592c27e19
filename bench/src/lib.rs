//! vcompare's benchmark harness: statistics, results and reports.
