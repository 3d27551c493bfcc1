"""Feature building: pure functions from contract-v1 traces to a feature frame and a JSON feature spec."""
