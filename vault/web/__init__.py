"""Pages that belong to no single feature: the dashboard and error pages."""
