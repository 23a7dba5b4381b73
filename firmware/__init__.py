"""Signed A/B firmware updates: the bundle a release is shipped in, its streamed install into
the root slot the node is not running, the boot loader's slot state, and the services that
take an update from the hub and commit it once the new system has proved itself healthy."""
