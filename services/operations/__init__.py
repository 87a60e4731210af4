"""Long-running operations (AIP-151) shared by the services: the durable job store (SQLite or
PostgreSQL), the workers that claim jobs under a lease, the inputs jobs read, and the
OperationsService every service serves."""
