"""FlowLens notifier: tells people about advisories (webhook, email, syslog)."""
