"""Providers' batch APIs through turnout: files uploaded with turnout's keys and the provider's
credential, batches created on the deployment that holds their file, their usage accounted once."""
