"""One environment per stack: OCI network and VM, its keys, cloud-init, and its GitHub side."""
