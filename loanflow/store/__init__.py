"""The database side of the core: the queries and writes that the activities, the CLI and the
book share (prices, the ledger, migrated loans, borrowers' contacts).

They live here, not in `activities/`, because the core must not depend on the layer built on
it: `activities/` and `loanflow/cli/` both call down into this package (README, "Layout").
"""
