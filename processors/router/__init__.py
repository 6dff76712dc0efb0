"""The router role (``hookline router``): event topics joined with webhook configs into delivery tasks."""
