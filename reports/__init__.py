"""Monitoring report (`beast report`): numbers from traces, champion predictions, self-contained HTML."""
