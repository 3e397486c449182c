# Nothing to register yet: reconciliation runs and partner invoices (DOMAIN.md §7) get their admin with their models.
