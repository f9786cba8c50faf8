"""A2A proxying: the agent card rewrite and what the gateway observes of A2A traffic (the
``a2a`` route policy is ``agentgateway.a2a.policy``)."""
