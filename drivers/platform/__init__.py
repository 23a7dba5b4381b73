"""Platform adapters: the service manager's watchdog and, later, SoC temperature and power."""
