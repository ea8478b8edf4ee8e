"""The books (issue 12, blueprint §8-§9): marks and P&L of the ledger's positions (`marks`), the
operator's views, attribution to signals and extracts (`views`, `export`). `docs/books.md`."""
