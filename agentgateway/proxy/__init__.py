"""The HTTP backend kind: a request proxied to an HTTP upstream (retries, mirroring,
response policies), over the connections of ``agentgateway.upstream``."""
