"""Spend: prices, budgets (reserve before, settle after) and the ledger."""
