"""Running the stages: Prefect flows (thin tasks; flows only orchestrate), deployments, promotion and rollback
after the gate, and the local tracking stack (PostgreSQL + MLflow + Prefect servers) they can run on."""
