"""The dev-kit: what a developer runs on one machine and never ships to a pole. The demo
(`edge-demo`), a local broker with throwaway certificates, the simulated pole devices and the
vision evaluation tooling."""
