# Reconciliation runs and partner invoices live here (DOMAIN.md §7).
