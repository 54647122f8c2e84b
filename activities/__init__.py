"""Activities: every side effect of a loan (KYC, custody, pricing, payouts, exchange, ledger,
notices, the read model). Workers get them all from `activities.registry.build_activities`."""
