"""`loanflow stress`: what a historical crash would do to a book, answered by the production
loan and market workflows on a private time-skipping Temporal server and a private database.

prices   what the book is priced with (a window of the data set, or any CSV files)
book     the book: generated per LTV bucket and asset, or read from an import file
clock    window time <-> server time (one fixed offset)
runner   the private server, database, mail sink and worker; the import; the replay
results  results.json from the private database's audit trail
report   report.md and report.html; plots the PNGs
"""
