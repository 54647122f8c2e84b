"""Market data: where quotes come from (`sources`, `replay`, `http`), how a price is formed from
them (`aggregate`), which loans a move affects (`triggers`), and the messages the market
monitor workflow exchanges with its activities (`messages`).

Nothing here is imported by the package itself: workflow code imports only `messages`,
`aggregate` and `triggers` (pure), never the I/O modules.
"""
