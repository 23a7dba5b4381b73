"""Hardware adapters: the pole's buttons, contacts, lamps and cameras, behind small device APIs."""
